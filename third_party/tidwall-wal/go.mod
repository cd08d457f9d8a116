module github.com/tidwall/wal

go 1.26.0

require (
	github.com/tidwall/gjson v1.10.2
	github.com/tidwall/tinylru v1.1.0
)

require (
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.2.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
