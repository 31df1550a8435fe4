module github.com/puchi-dev/puchi/services

go 1.26.0

require (
	github.com/puchi-dev/puchi/gen v0.0.0
	github.com/puchi-dev/puchi/platform v0.0.0
)

require (
	github.com/google/uuid v1.6.0 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.44.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20261110000943-09e21b237f2c // indirect
	google.golang.org/grpc v1.85.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace github.com/puchi-dev/puchi/gen => ../gen

replace github.com/puchi-dev/puchi/platform => ../platform
