package main

import "testing"

// TestCheckOriginsKeepsTheDocumentedForms: what a browser sends
// (scheme://host[:port]), in any case, with spaces and a trailing '/'
// that the library trims, "*" for any and "null" pass; an entry no
// Origin header could match is refused.
func TestCheckOriginsKeepsTheDocumentedForms(t *testing.T) {
	for list, ok := range map[string]bool{
		"":                         true,
		"*":                        true,
		"null":                     true,
		"https://app.example.com":  true,
		"https://app.example.com/": true,
		"https://app.example.com,https://admin.example.com": true,
		" https://a.example.com , http://localhost:3000 ,":  true,
		"HTTPS://APP.example.com":                           true,
		"http://[::1]:3000":                                 true,
		"app.example.com":                                   false,
		"localhost:3000":                                    false,
		"https://app.example.com,app.example.com":           false,
		"https://app.example.com/chat":                      false,
		"https://app.example.com?x":                         false,
		"https://u@app.example.com":                         false,
		"//app.example.com":                                 false,
		"https://":                                          false,
	} {
		if err := checkOrigins(list); (err == nil) != ok {
			t.Errorf("checkOrigins(%q) = %v", list, err)
		}
	}
}
