package main

// Spreading a run's connections over the nodes of a cluster (-url given
// several times). Each room's members are dealt out round-robin, member k
// of room r to node (r+k) mod n, so that every room of at least n members
// spans every node and each delivery crosses nodes as often as it would
// behind a load balancer that knows nothing of rooms; each room starts at
// another node, so that rooms of a size that is no multiple of n (C1's
// five members over three nodes) still load the nodes evenly. With one
// URL everything goes to it.

// nodeOf returns the node, an index into -url's list of n, that the
// member-th member of room room connects to.
func nodeOf(room, member, n int) int {
	return (room + member) % n
}

// node returns the node connection i connects to: the scenario's roomOf
// and memberOf say which room it joins and which member of it it is
// (without memberOf, member i of room 0).
func (g *gen) node(i int) int {
	r, m := 0, i
	if g.memberOf != nil {
		r, m = g.roomOf(i), g.memberOf(i)
	}
	return nodeOf(r, m, len(g.cfg.URLs))
}
