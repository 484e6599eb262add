package main

// Spreading a run's connections over the nodes of a cluster (-url given
// several times). Each room's members are dealt out round-robin, member k
// to node k mod n, so that every room of at least n members spans every
// node and each delivery crosses nodes as often as it would behind a load
// balancer that knows nothing of rooms. With one URL everything goes to it.

// nodeOf returns the node, an index into -url's list of n, that the
// member-th member of a room connects to.
func nodeOf(member, n int) int {
	return member % n
}

// node returns the node connection i connects to: the scenario's memberOf
// says which member of its room connection i is (without it, i itself).
func (g *gen) node(i int) int {
	m := i
	if g.memberOf != nil {
		m = g.memberOf(i)
	}
	return nodeOf(m, len(g.cfg.URLs))
}
