package livesync

import "context"

// roomAllowed reports whether roomID matches one of patterns, where '*'
// matches any run of characters.
func roomAllowed(patterns []string, roomID string) bool {
	for _, p := range patterns {
		if globMatch(p, roomID) {
			return true
		}
	}
	return false
}

func globMatch(pattern, s string) bool {
	// Iterative wildcard match with single backtrack point: linear enough
	// for short patterns and never exponential.
	p, i, star, mark := 0, 0, -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// mayJoin applies UserInfo.Rooms and the CanJoin hook.
func (s *Server) mayJoin(ctx context.Context, u *UserInfo, roomID string) bool {
	if u != nil && u.Rooms != nil && !roomAllowed(u.Rooms, roomID) {
		return false
	}
	return s.opts.CanJoin == nil || s.opts.CanJoin(ctx, u, roomID)
}
