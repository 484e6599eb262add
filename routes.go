package livesync

import "net/http"

// routes adds the operational endpoints to a standalone server's mux.
func (s *Server) routes(mux *http.ServeMux) {}
