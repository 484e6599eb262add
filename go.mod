module github.com/openlivesync/livesync

go 1.26

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	golang.org/x/time v0.16.0 // indirect
)
