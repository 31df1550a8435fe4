module github.com/puchi-dev/puchi

go 1.26.0

require (
	github.com/puchi-dev/puchi/gateway v0.0.0
	github.com/puchi-dev/puchi/gen v0.0.0
	github.com/puchi-dev/puchi/platform v0.0.0
	github.com/puchi-dev/puchi/services v0.0.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/confluentinc/confluent-kafka-go/v2 v2.11.1 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.12.0 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.44.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20261110000943-09e21b237f2c // indirect
	google.golang.org/grpc v1.85.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace (
	github.com/puchi-dev/puchi/gateway => ./gateway
	github.com/puchi-dev/puchi/gen => ./gen
	github.com/puchi-dev/puchi/platform => ./platform
	github.com/puchi-dev/puchi/services => ./services
)
