// Package broker runs Puchi's embedded Kafka: a single in-process broker (franz-go's
// kfake) that speaks the Kafka wire protocol, so the regular Kafka clients and
// external tools (kcat, kafka-ui) connect to it as to a real cluster. It is the
// embedded default of `puchi run`; in the distributed setup KAFKA_BROKERS points at
// a real cluster instead and this package is not used.
package broker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/puchi-dev/puchi/platform/config"
)

// Defaults applied by [Start] to zero-valued [Config] fields.
const (
	DefaultAddr      = "127.0.0.1:9092"
	DefaultRetention = 30 * 24 * time.Hour
)

// saslStateFile is where kfake persists its SASL users inside DataDir.
const saslStateFile = "sasl.json"

// retentionCheckInterval is how often the broker deletes expired segments of the
// topics that carry an explicit retention.ms (kfake's log.cleaner.backoff.ms).
const retentionCheckInterval = 5 * time.Minute

// Config configures the embedded broker.
type Config struct {
	// Addr is the host:port to listen on and to advertise to clients. Port 0 picks
	// a free port (see [Broker.Addrs]). Default [DefaultAddr].
	Addr string
	// DataDir, when set, makes the broker persistent: topics, records, consumer
	// group offsets and producer ids are written there and reloaded by the next
	// Start on the same directory. Empty keeps everything in memory.
	DataDir string
	// SyncWrites fsyncs every produced batch (durable across a machine crash, much
	// slower). Without it data is synced on segment roll and on Close, like Kafka's
	// default flush policy. Only meaningful with DataDir.
	SyncWrites bool
	// Retention is the broker default log.retention.ms. Records are expired only
	// on topics with an explicit retention.ms (kafka.EnsureTopics always sets one).
	// Default [DefaultRetention].
	Retention time.Duration
	// SASLUser, when set, makes the broker require SASL authentication of every
	// client and seeds this superuser. SASLMechanism is SCRAM-SHA-256 (the
	// default when empty), SCRAM-SHA-512 or PLAIN (the broker serves no TLS, so
	// PLAIN puts the password on the wire in clear text: tests only); the
	// password is SASLPassword. The configured user is the broker's only one:
	// with a DataDir, SASL users persisted by an earlier run (including SCRAM
	// users added at runtime) are discarded at Start, so a changed password or
	// mechanism takes effect and a directory first used without SASL works.
	SASLUser      string
	SASLPassword  config.Secret
	SASLMechanism string
}

// Broker is a running embedded Kafka broker. Its methods are safe for concurrent
// use.
type Broker struct {
	cluster *kfake.Cluster
	log     *slog.Logger
	addrs   string
	once    sync.Once
}

// Start starts a one-node broker listening on cfg.Addr and returns once it accepts
// connections. With cfg.DataDir set, the persisted state in that directory is
// loaded first. The caller must call [Broker.Close].
func Start(cfg Config, log *slog.Logger) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("broker: retention must be positive, got %s", cfg.Retention)
	}
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("broker: addr %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("broker: addr %q: invalid port", cfg.Addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}

	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ClusterID("puchi"),
		kfake.DefaultNumPartitions(3),
		// kfake always asks for 127.0.0.1:<port>; listen on the configured host
		// instead. The listener's address is what metadata advertises.
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			_, p, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
		kfake.BrokerConfigs(map[string]string{
			"log.retention.ms":       strconv.FormatInt(cfg.Retention.Milliseconds(), 10),
			"log.cleaner.backoff.ms": strconv.FormatInt(retentionCheckInterval.Milliseconds(), 10),
		}),
		kfake.WithLogger(slogAdapter{log}),
	}
	if cfg.SASLUser != "" {
		mech := strings.ToUpper(cfg.SASLMechanism)
		switch mech {
		case "":
			mech = "SCRAM-SHA-256"
		case "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN":
		default:
			return nil, fmt.Errorf("broker: SASL mechanism %q is not SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN", cfg.SASLMechanism)
		}
		if cfg.SASLPassword == "" {
			return nil, fmt.Errorf("broker: SASL user %q needs a password", cfg.SASLUser)
		}
		cfg.SASLMechanism = mech
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(mech, cfg.SASLUser, string(cfg.SASLPassword)))
	} else if cfg.SASLMechanism != "" || cfg.SASLPassword != "" {
		return nil, errors.New("broker: SASL mechanism or password set without a SASL user")
	}
	if cfg.DataDir != "" {
		if cfg.SASLUser != "" {
			// kfake replaces the configured users with the persisted ones when
			// it loads the directory: drop those so the configuration wins.
			if err := os.Remove(filepath.Join(cfg.DataDir, saslStateFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("broker: reset SASL users: %w", err)
			}
		}
		opts = append(opts, kfake.DataDir(cfg.DataDir))
		if cfg.SyncWrites {
			opts = append(opts, kfake.SyncWrites())
		}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: start on %s: %w", cfg.Addr, err)
	}
	b := &Broker{cluster: c, log: log, addrs: strings.Join(c.ListenAddrs(), ",")}
	attrs := []any{"addr", b.addrs, "data_dir", cfg.DataDir, "retention", cfg.Retention}
	if cfg.SASLUser != "" {
		attrs = append(attrs, "sasl", cfg.SASLMechanism, "sasl_user", cfg.SASLUser) // never the password
	} else {
		attrs = append(attrs, "sasl", "off")
	}
	log.Info("embedded kafka broker started", attrs...)
	return b, nil
}

// Addrs returns the bootstrap servers ("host:port[,host:port]") clients use.
func (b *Broker) Addrs() string { return b.addrs }

// ApplyRetention deletes expired records now instead of waiting for the periodic
// check; for tests and ops. It blocks until done.
func (b *Broker) ApplyRetention() { b.cluster.ApplyRetention() }

// Close stops the broker, closing client connections and, with a DataDir, syncing
// its state to disk. It blocks until the broker is down; calling it again is a
// no-op.
func (b *Broker) Close() {
	b.once.Do(func() {
		b.cluster.Close()
		b.log.Info("embedded kafka broker stopped", "addr", b.addrs)
	})
}

// slogAdapter forwards kfake's warnings and errors to slog; its info and debug
// output (one line per request) is too verbose to keep.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Logf(level kfake.LogLevel, format string, args ...any) {
	var l slog.Level
	switch level {
	case kfake.LogLevelError:
		l = slog.LevelError
	case kfake.LogLevelWarn:
		l = slog.LevelWarn
	default:
		return
	}
	if !a.log.Enabled(context.Background(), l) {
		return
	}
	a.log.Log(context.Background(), l, "kfake: "+fmt.Sprintf(format, args...))
}
