// Package deploycheck checks the deployment files (docker-compose.yml,
// deploy/Dockerfile, deploy/**) against the code, the Makefile and the ports of
// docs/architecture.md. No Docker engine is needed: the files are parsed, not run.
package deploycheck

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/puchi-dev/puchi/internal/system"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// puchiImage is the tag compose gives the image built from deploy/Dockerfile.
const puchiImage = "puchi:dev"

// kafkaBrokers is the in-network listener every puchi container must use.
const kafkaBrokers = "kafka:29092"

// architecturePorts is the services table of docs/architecture.md: gRPC and
// admin HTTP port of every service, existing or planned.
var architecturePorts = map[string][2]int{
	"user":         {50051, 8001},
	"lesson":       {50052, 8002},
	"progress":     {50053, 8003},
	"notification": {50054, 8005},
	"media":        {50055, 8004},
	"quiz":         {50056, 8007},
	"vocabulary":   {50057, 8006},
	"analytics":    {50058, 8008},
}

// fixedPorts are the other published ports of the table: service -> ports.
var fixedPorts = map[string][]int{
	"gateway":  {8000},
	"kafka-ui": {8080},
	"kafka":    {9092},
	"postgres": {5432},
	// Object storage and observability (deploy/README.md).
	"minio":          {9000, 9001},
	"otel-collector": {4317, 4318, 13133},
	"jaeger":         {16686},
	"prometheus":     {9090},
	"grafana":        {3000},
}

// puchiCommands are the first words `puchi` accepts that make sense in a container.
var puchiCommands = []string{"run", "serve", "gateway", "broker", "topics", "content"}

// demoFile is the source of the demo course the content-init one-shot imports.
const demoFile = "services/content/demo.yaml"

type composeFile struct {
	Name     string                    `yaml:"name"`
	Version  *string                   `yaml:"version"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Restart   string   `yaml:"restart"`
	Profiles  []string `yaml:"profiles"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

// root is the repository root (where go.work is).
func root(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.work not found above the test directory")
		}
		dir = parent
	}
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.Unmarshal([]byte(readFile(t, "docker-compose.yml")), &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	return c
}

// existingServices lists services/<name>/ folders that hold a service.go.
func existingServices(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root(t), "services"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(root(t), "services", e.Name(), "service.go")); err == nil {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatal("no services/<name>/service.go found")
	}
	return out
}

func (s composeService) isPuchi() bool {
	return s.Image == puchiImage || (s.Build != nil && s.Build.Dockerfile == "deploy/Dockerfile")
}

// published returns the host->container ports a service publishes.
func published(t *testing.T, name string, s composeService) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, p := range s.Ports {
		parts := strings.Split(strings.TrimSuffix(p, "/tcp"), ":")
		if len(parts) < 2 {
			t.Errorf("%s: port %q does not publish a host port (want HOST:CONTAINER)", name, p)
			continue
		}
		host, err1 := strconv.Atoi(parts[len(parts)-2])
		ctr, err2 := strconv.Atoi(parts[len(parts)-1])
		if err1 != nil || err2 != nil {
			t.Errorf("%s: port %q is not HOST:CONTAINER", name, p)
			continue
		}
		out[host] = ctr
	}
	return out
}

func TestComposeHasNoVersionKeyAndEveryServiceAnImage(t *testing.T) {
	c := loadCompose(t)
	if c.Version != nil {
		t.Error("docker-compose.yml: drop the obsolete top-level `version:` key (compose spec)")
	}
	for name, s := range c.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("%s: neither image nor build", name)
		}
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(root(t), s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("%s: build: %v", name, err)
			}
		}
		if strings.HasSuffix(s.Image, ":latest") {
			t.Errorf("%s: pin the image tag instead of %q", name, s.Image)
		}
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s: depends_on %q, which is not a service", name, dep)
			}
		}
	}
}

func TestPuchiContainers(t *testing.T) {
	c := loadCompose(t)
	have := existingServices(t)
	served := map[string]string{} // service -> compose service running it
	n := 0
	for name, s := range c.Services {
		if !s.isPuchi() {
			continue
		}
		n++
		if s.Image != puchiImage {
			t.Errorf("%s: image %q, want %q (one image for every puchi container)", name, s.Image, puchiImage)
		}
		if s.Restart == "" {
			t.Errorf("%s: no restart policy", name)
		}
		if s.Restart != "no" && len(s.Profiles) > 0 {
			t.Errorf("%s: in profiles %v, so `make up` (docker compose up) would not start it", name, s.Profiles)
		}
		// A one-shot job (restart "no", e.g. kafka-init) exits; it has no health to check.
		if s.Restart != "no" && (s.Healthcheck == nil || len(s.Healthcheck.Test) == 0) {
			t.Errorf("%s: no healthcheck", name)
		}
		if got := s.Environment["KAFKA_BROKERS"]; got != kafkaBrokers {
			t.Errorf("%s: KAFKA_BROKERS = %q, want %q", name, got, kafkaBrokers)
		}
		if len(s.Command) == 0 {
			t.Errorf("%s: no command (the image's default is `help`)", name)
			continue
		}
		cmd, args := s.Command[0], s.Command[1:]
		if !slices.Contains(puchiCommands, cmd) {
			t.Errorf("%s: command %q: %q is not a puchi command (%v)", name, s.Command, cmd, puchiCommands)
		}
		switch cmd {
		case "serve":
			if len(args) == 0 {
				t.Errorf("%s: serve needs service names", name)
			}
			for _, svc := range args {
				if !slices.Contains(have, svc) {
					t.Errorf("%s: serve %q: no services/%s/service.go (have %v)", name, svc, svc, have)
				}
				if prev, dup := served[svc]; dup {
					t.Errorf("%s: %q is served by %s too", name, svc, prev)
				}
				served[svc] = name
			}
		case "topics":
			if len(args) != 1 || (args[0] != "ensure" && args[0] != "list") {
				t.Errorf("%s: topics takes list or ensure, got %q", name, args)
			}
		case "content":
			if len(args) != 2 || (args[0] != "import" && args[0] != "validate") || !strings.HasPrefix(args[1], "/") {
				t.Errorf("%s: content takes import|validate /ABSOLUTE/FILE, got %q", name, args)
			}
			if s.Restart != "no" {
				t.Errorf("%s: content %s is a one-shot job: want restart \"no\", have %q", name, args, s.Restart)
			}
		case "gateway", "run", "broker":
			if len(args) > 0 {
				t.Errorf("%s: %s takes no arguments, got %q", name, cmd, args)
			}
		}
		if s.Healthcheck != nil && len(s.Healthcheck.Test) > 0 {
			hc := strings.Join(s.Healthcheck.Test, " ")
			if !strings.Contains(hc, "curl") || !regexp.MustCompile(`localhost:\d+/(health|ready)`).MatchString(hc) {
				t.Errorf("%s: healthcheck %q: want curl on localhost:<port>/health or /ready", name, hc)
			}
		}
	}
	if n == 0 {
		t.Fatalf("no service uses the puchi image %q", puchiImage)
	}
	for _, svc := range have {
		if _, ok := served[svc]; !ok {
			t.Errorf("service %q exists (services/%s/service.go) but no compose service runs `serve %s`", svc, svc, svc)
		}
	}
}

func TestExistingServicesMatchTheSystem(t *testing.T) {
	cfg := &system.Config{}
	got := system.ServiceNames(cfg)
	want := existingServices(t)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("system.Specs names %v, services/*/service.go %v", got, want)
	}
	for _, sp := range system.Specs(cfg) {
		p, ok := architecturePorts[sp.Name]
		if !ok {
			t.Errorf("%s: not in docs/architecture.md's table (update architecturePorts too)", sp.Name)
			continue
		}
		if sp.GRPCPort != p[0] || sp.AdminPort != p[1] {
			t.Errorf("%s: Spec ports %d/%d, architecture.md %d/%d", sp.Name, sp.GRPCPort, sp.AdminPort, p[0], p[1])
		}
	}
}

func TestPublishedPortsMatchArchitecture(t *testing.T) {
	c := loadCompose(t)
	hostPorts := map[int]string{}
	for name, s := range c.Services {
		for host := range published(t, name, s) {
			if prev, dup := hostPorts[host]; dup {
				t.Errorf("host port %d published by %s and %s", host, prev, name)
			}
			hostPorts[host] = name
		}
	}
	expect := func(name string, ports ...int) {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("compose service %q missing", name)
			return
		}
		pub := published(t, name, s)
		for _, p := range ports {
			if pub[p] != p {
				t.Errorf("%s: want %d:%d published, have %v", name, p, p, s.Ports)
			}
		}
	}
	for name, ports := range fixedPorts {
		expect(name, ports...)
	}
	gw := c.Services["gateway"]
	for _, svc := range existingServices(t) {
		p, ok := architecturePorts[svc]
		if !ok {
			t.Errorf("%s: not in architecturePorts (docs/architecture.md's table)", svc)
			continue
		}
		expect(svc, p[0], p[1])
		s := c.Services[svc]
		up := strings.ToUpper(svc)
		if got, want := s.Environment["PUCHI_"+up+"_GRPC_ADDR"], fmt.Sprintf(":%d", p[0]); got != want {
			t.Errorf("%s: PUCHI_%s_GRPC_ADDR = %q, want %q", svc, up, got, want)
		}
		if got, want := s.Environment["PUCHI_"+up+"_ADMIN_ADDR"], fmt.Sprintf(":%d", p[1]); got != want {
			t.Errorf("%s: PUCHI_%s_ADMIN_ADDR = %q, want %q", svc, up, got, want)
		}
		if s.Healthcheck != nil && !strings.Contains(strings.Join(s.Healthcheck.Test, " "), fmt.Sprintf("localhost:%d/", p[1])) {
			t.Errorf("%s: healthcheck %q does not probe the admin port %d", svc, s.Healthcheck.Test, p[1])
		}
		// The gateway dials every service by its compose name.
		if got, want := gw.Environment["PUCHI_"+up+"_ADDR"], fmt.Sprintf("%s:%d", svc, p[0]); got != want {
			t.Errorf("gateway: PUCHI_%s_ADDR = %q, want %q", up, got, want)
		}
		if gw.DependsOn[svc].Condition != "service_healthy" {
			t.Errorf("gateway: should depend on %s being healthy", svc)
		}
		// A service that dials another (deps.Dial("x")) needs its address and,
		// to start cleanly, that service healthy first.
		for _, dep := range dialedServices(t, svc) {
			dp, ok := architecturePorts[dep]
			if !ok {
				t.Errorf("%s dials %q, which is not in architecturePorts", svc, dep)
				continue
			}
			env := "PUCHI_" + strings.ToUpper(dep) + "_ADDR"
			if got, want := s.Environment[env], fmt.Sprintf("%s:%d", dep, dp[0]); got != want {
				t.Errorf("%s dials %s: %s = %q, want %q", svc, dep, env, got, want)
			}
			if s.DependsOn[dep].Condition != "service_healthy" {
				t.Errorf("%s dials %s: should depend on it being healthy", svc, dep)
			}
		}
	}
	if got := gw.Environment["PUCHI_GATEWAY_ADDR"]; got != ":8000" {
		t.Errorf("gateway: PUCHI_GATEWAY_ADDR = %q, want :8000", got)
	}
}

// dialedServices lists the services services/<svc> dials (deps.Dial("x") in
// its non-test Go files).
func dialedServices(t *testing.T, svc string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root(t), "services", svc, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\.Dial\("([a-z]+)"\)`)
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if !slices.Contains(out, m[1]) {
				out = append(out, m[1])
			}
		}
	}
	sort.Strings(out)
	return out
}

// needsKey: long-running puchi containers verify or sign tokens; `content
// import` mints an admin token from the key.
func (s composeService) needsKey() bool {
	if !s.isPuchi() {
		return false
	}
	return s.Restart != "no" || (len(s.Command) >= 2 && s.Command[0] == "content" && s.Command[1] == "import")
}

func TestJWTKeyIsShared(t *testing.T) {
	c := loadCompose(t)
	var users []string
	for name, s := range c.Services {
		if !s.needsKey() {
			continue
		}
		key := s.Environment["PUCHI_JWT_KEY_FILE"]
		if key != "/keys/jwt-ed25519.pem" {
			t.Errorf("%s: PUCHI_JWT_KEY_FILE = %q, want /keys/jwt-ed25519.pem (the shared keys volume)", name, key)
		}
		if !slices.Contains(s.Volumes, "keys:/keys") {
			t.Errorf("%s: does not mount the keys volume on /keys", name)
		}
		users = append(users, name)
	}
	if _, ok := c.Volumes["keys"]; !ok && len(users) > 0 {
		t.Error("volume `keys` is not declared")
	}
}

func TestMountsExist(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(filepath.Join(root(t), src)); err != nil {
					t.Errorf("%s: mounts %s: %v", name, src, err)
				}
				continue
			}
			if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: named volume %q is not declared under volumes:", name, src)
			}
		}
	}
}

func TestKafkaIsKRaft(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		if strings.Contains(name, "zookeeper") || strings.Contains(s.Image, "zookeeper") {
			t.Errorf("%s: no ZooKeeper (KRaft)", name)
		}
		for k := range s.Environment {
			if strings.Contains(strings.ToUpper(k), "ZOOKEEPER") {
				t.Errorf("%s: %s: no ZooKeeper (KRaft)", name, k)
			}
		}
	}
	k, ok := c.Services["kafka"]
	if !ok {
		t.Fatal("no kafka service")
	}
	roles := k.Environment["KAFKA_PROCESS_ROLES"]
	if !strings.Contains(roles, "broker") || !strings.Contains(roles, "controller") {
		t.Errorf("kafka: KAFKA_PROCESS_ROLES = %q, want broker,controller", roles)
	}
	adv := k.Environment["KAFKA_ADVERTISED_LISTENERS"]
	for _, l := range []string{"//" + kafkaBrokers, "//localhost:9092"} {
		if !strings.Contains(adv, l) {
			t.Errorf("kafka: KAFKA_ADVERTISED_LISTENERS = %q lacks %s", adv, l)
		}
	}
	if k.Healthcheck == nil || !strings.Contains(strings.Join(k.Healthcheck.Test, " "), "kafka-broker-api-versions.sh") {
		t.Error("kafka: healthcheck should run kafka-broker-api-versions.sh")
	}
	init := c.Services["kafka-init"]
	if !slices.Equal(init.Command, []string{"topics", "ensure"}) {
		t.Errorf("kafka-init: command %q, want [topics ensure]", init.Command)
	}
	if init.DependsOn["kafka"].Condition != "service_healthy" {
		t.Error("kafka-init: should wait for kafka to be healthy")
	}
	for _, svc := range existingServices(t) {
		if c.Services[svc].DependsOn["kafka-init"].Condition != "service_completed_successfully" {
			t.Errorf("%s: should wait for kafka-init to complete (topics before consumers)", svc)
		}
	}
}

// TestMakefileComposeServices: the Makefile's `docker compose up/stop/run NAME...`
// names must be compose services.
func TestMakefileComposeServices(t *testing.T) {
	c := loadCompose(t)
	re := regexp.MustCompile(`(?m)^\t\$\(COMPOSE\)\s+(up|stop|start|restart|logs|run)\s+(.*)$`)
	found := 0
	for _, m := range re.FindAllStringSubmatch(readFile(t, "Makefile"), -1) {
		for _, w := range strings.Fields(m[2]) {
			if strings.HasPrefix(w, "-") || strings.Contains(w, "$") {
				continue
			}
			found++
			if _, ok := c.Services[w]; !ok {
				t.Errorf("Makefile: `$(COMPOSE) %s %s` names %q, not a compose service", m[1], m[2], w)
			}
		}
	}
	if found == 0 {
		t.Error("Makefile: no `$(COMPOSE) up/stop NAME` lines found (did the targets move?)")
	}
}

func TestPostgresHasADatabasePerService(t *testing.T) {
	c := loadCompose(t)
	sql := readFile(t, "deploy/postgres/init.sql")
	for svc := range architecturePorts {
		if !strings.Contains(sql, "CREATE DATABASE puchi_"+svc+";") {
			t.Errorf("deploy/postgres/init.sql: no database puchi_%s", svc)
		}
	}
	re := regexp.MustCompile(`^postgres://[^@]+@postgres:5432/([a-z_]+)\?`)
	for _, svc := range existingServices(t) {
		url := c.Services[svc].Environment["PUCHI_DATABASE_URL"]
		m := re.FindStringSubmatch(url)
		if m == nil || m[1] != "puchi_"+svc {
			t.Errorf("%s: PUCHI_DATABASE_URL = %q, want postgres://...@postgres:5432/puchi_%s?...", svc, url, svc)
		}
		if c.Services[svc].DependsOn["postgres"].Condition != "service_healthy" {
			t.Errorf("%s: should wait for postgres to be healthy", svc)
		}
	}
}

// TestKafkaUIDecodesEvents: Kafka UI's protobufFilesDir is gen/kafka-ui, which
// holds every proto/ file unchanged plus exactly the third-party files they
// import, transitively (google/protobuf/* is built into Kafka UI), so the serde
// can link every file it finds there; every message the serde maps a topic to
// is declared in an events.proto, for a real topic, and every domain's events
// are mapped.
func TestKafkaUIDecodesEvents(t *testing.T) {
	c := loadCompose(t)
	ui, ok := c.Services["kafka-ui"]
	if !ok {
		t.Fatal("no kafka-ui service")
	}
	var cfg struct {
		Kafka struct {
			Clusters []struct {
				Name             string `yaml:"name"`
				BootstrapServers string `yaml:"bootstrapServers"`
				Serde            []struct {
					Name       string `yaml:"name"`
					ClassName  string `yaml:"className"`
					Properties struct {
						Dir     string            `yaml:"protobufFilesDir"`
						ByTopic map[string]string `yaml:"protobufMessageNameByTopic"`
					} `yaml:"properties"`
				} `yaml:"serde"`
			} `yaml:"clusters"`
		} `yaml:"kafka"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, "deploy/kafka-ui/config.yml")), &cfg); err != nil {
		t.Fatalf("deploy/kafka-ui/config.yml: %v", err)
	}
	if len(cfg.Kafka.Clusters) != 1 {
		t.Fatalf("deploy/kafka-ui/config.yml: want one cluster, have %d", len(cfg.Kafka.Clusters))
	}
	cl := cfg.Kafka.Clusters[0]
	if cl.BootstrapServers != kafkaBrokers {
		t.Errorf("kafka-ui: bootstrapServers = %q, want %q", cl.BootstrapServers, kafkaBrokers)
	}
	for k := range ui.Environment {
		if strings.HasPrefix(k, "KAFKA_CLUSTERS_") {
			t.Errorf("kafka-ui: %s would replace the clusters list of config.yml (and its serde)", k)
		}
	}
	if !slices.Contains(ui.Volumes, "./deploy/kafka-ui/config.yml:/etc/kafkaui/puchi.yml:ro") ||
		ui.Environment["SPRING_CONFIG_ADDITIONAL-LOCATION"] != "/etc/kafkaui/puchi.yml" {
		t.Error("kafka-ui: config.yml must be mounted on /etc/kafkaui/puchi.yml and named by SPRING_CONFIG_ADDITIONAL-LOCATION")
	}
	var dir string
	var byTopic map[string]string
	for _, s := range cl.Serde {
		if s.Name == "ProtobufFile" {
			if s.ClassName != "" {
				t.Error("kafka-ui: the built-in ProtobufFile serde must not set className")
			}
			dir, byTopic = s.Properties.Dir, s.Properties.ByTopic
		}
	}
	if dir == "" || len(byTopic) == 0 {
		t.Fatal("kafka-ui: no ProtobufFile serde with protobufFilesDir and protobufMessageNameByTopic")
	}

	// The whole of gen/kafka-ui is mounted on the serde's folder, read-only.
	if want := "./" + kafkaUIProtos + ":" + dir + ":ro"; !slices.Contains(ui.Volumes, want) {
		t.Errorf("kafka-ui: want volume %q (the serde's protobufFilesDir is %s)", want, dir)
	}
	for _, v := range ui.Volumes {
		if strings.HasPrefix(v, "./proto/") || strings.HasPrefix(v, "./third_party/") {
			t.Errorf("kafka-ui: mounts %q: mount only %s (proto/ alone does not resolve its imports; third_party/ is not committed)", v, kafkaUIProtos)
		}
	}

	gen := protoTree(t, kafkaUIProtos)
	src := protoTree(t, "proto")
	if len(src) == 0 {
		t.Fatal("no .proto files under proto/")
	}
	// Every proto/ file is copied unchanged.
	for rel, body := range src {
		got, ok := gen[rel]
		if !ok {
			t.Errorf("%s/%s missing (run `make proto`)", kafkaUIProtos, rel)
		} else if got != body {
			t.Errorf("%s/%s differs from proto/%s (run `make proto`)", kafkaUIProtos, rel, rel)
		}
	}
	// Every import resolves inside gen/kafka-ui, transitively, starting from
	// every file (the serde links all of them); nothing else is there.
	needed := map[string]bool{}
	queue := slices.Sorted(maps.Keys(src))
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		if needed[f] {
			continue
		}
		needed[f] = true
		body, ok := gen[f]
		if !ok {
			continue // reported by the importer below
		}
		for _, imp := range protoImports(body) {
			if strings.HasPrefix(imp, "google/protobuf/") {
				continue // Kafka UI's built-in well-known types
			}
			if _, ok := gen[imp]; !ok {
				t.Errorf("%s/%s imports %s, which is not in %s (run `make proto`)", kafkaUIProtos, f, imp, kafkaUIProtos)
				continue
			}
			queue = append(queue, imp)
		}
	}
	for rel := range gen {
		if strings.HasPrefix(rel, "google/protobuf/") {
			t.Errorf("%s/%s: the well-known types are built into Kafka UI; a copy would clash", kafkaUIProtos, rel)
		} else if !needed[rel] {
			t.Errorf("%s/%s is neither in proto/ nor imported by it (stale? run `make proto`)", kafkaUIProtos, rel)
		}
	}

	// Collect the messages of every events.proto, by package.
	files, err := filepath.Glob(filepath.Join(root(t), "proto", "puchi", "*", "v1", "events.proto"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no proto/puchi/*/v1/events.proto (%v)", err)
	}
	messages := map[string]bool{}
	packages := map[string]string{} // package -> events.proto
	pkgRe := regexp.MustCompile(`(?m)^package\s+([\w.]+)\s*;`)
	msgRe := regexp.MustCompile(`(?m)^message\s+(\w+)\s*\{`)
	for _, f := range files {
		rel, _ := filepath.Rel(filepath.Join(root(t), "proto"), f)
		rel = filepath.ToSlash(rel)
		if _, ok := gen[rel]; !ok {
			t.Errorf("%s/%s missing: Kafka UI cannot decode its events", kafkaUIProtos, rel)
		}
		body := src[rel]
		pkg := pkgRe.FindStringSubmatch(body)
		if pkg == nil {
			t.Errorf("proto/%s: no package", rel)
			continue
		}
		packages[pkg[1]] = rel
		for _, m := range msgRe.FindAllStringSubmatch(body, -1) {
			messages[pkg[1]+"."+m[1]] = true
		}
	}
	mapped := map[string]bool{}
	for topic, msg := range byTopic {
		if !messages[msg] {
			t.Errorf("kafka-ui: topic %s maps to %s, not declared in any events.proto", topic, msg)
		}
		if !slices.Contains(kafka.Topics, topic) {
			t.Errorf("kafka-ui: topic %s is not one of platform/kafka's topics %v", topic, kafka.Topics)
		}
		if i := strings.LastIndex(msg, "."); i > 0 {
			mapped[msg[:i]] = true
		}
	}
	for pkg, rel := range packages {
		if !mapped[pkg] {
			t.Errorf("kafka-ui: no topic maps to a message of %s (proto/%s): add its topic to protobufMessageNameByTopic", pkg, rel)
		}
	}
}

// kafkaUIProtos is the folder scripts/proto.sh writes for Kafka UI.
const kafkaUIProtos = "gen/kafka-ui"

// protoTree reads every .proto under dir: path relative to dir -> contents.
func protoTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	base := filepath.Join(root(t), dir)
	out := map[string]string{}
	err := filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(base, path)
		if !strings.HasSuffix(path, ".proto") {
			if dir == kafkaUIProtos {
				t.Errorf("%s/%s: only .proto files belong there", dir, filepath.ToSlash(rel))
			}
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v (run `make proto`)", dir, err)
	}
	return out
}

var importRe = regexp.MustCompile(`(?m)^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;`)

func protoImports(body string) []string {
	var out []string
	for _, m := range importRe.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestContentInit: the one-shot that seeds the demo course in compose imports a
// file the image really has, through the lesson and quiz services, with the
// shared key, once they are healthy. It sits in a profile so that `make up`
// does not re-import (a re-import overwrites edits to the course), and the
// Makefile runs it.
func TestContentInit(t *testing.T) {
	c := loadCompose(t)
	s, ok := c.Services["content-init"]
	if !ok {
		t.Fatal("no content-init service (the demo course cannot load itself in compose: lesson and quiz run apart)")
	}
	if !s.isPuchi() || len(s.Command) != 3 || s.Command[0] != "content" || s.Command[1] != "import" {
		t.Fatalf("content-init: command %q, want [content import /path/in/image]", s.Command)
	}
	if s.Restart != "no" {
		t.Errorf("content-init: restart %q, want \"no\" (one-shot)", s.Restart)
	}
	if len(s.Profiles) == 0 {
		t.Error("content-init: want a profile, so `docker compose up` does not re-import on every start")
	}
	file := s.Command[2]
	df := readFile(t, "deploy/Dockerfile")
	copyRe := regexp.MustCompile(`(?m)^COPY\s+(?:--\S+\s+)*` + regexp.QuoteMeta(demoFile) + `\s+(\S+)\s*$`)
	m := copyRe.FindStringSubmatch(df)
	if m == nil {
		t.Errorf("Dockerfile: no `COPY %s <path>` (content-init imports %s)", demoFile, file)
	} else if m[1] != file {
		t.Errorf("Dockerfile copies %s to %s, content-init imports %s", demoFile, m[1], file)
	}
	if _, err := os.Stat(filepath.Join(root(t), demoFile)); err != nil {
		t.Error(err)
	}
	for _, line := range strings.Split(readFile(t, ".dockerignore"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if ok, _ := filepath.Match(strings.TrimPrefix(line, "/"), demoFile); ok || strings.HasPrefix(demoFile, strings.TrimSuffix(strings.TrimPrefix(line, "/"), "/")+"/") {
			t.Errorf(".dockerignore line %q keeps %s out of the build context", line, demoFile)
		}
	}
	for _, svc := range []string{"lesson", "quiz"} {
		p := architecturePorts[svc]
		env := "PUCHI_" + strings.ToUpper(svc) + "_ADDR"
		if got, want := s.Environment[env], fmt.Sprintf("%s:%d", svc, p[0]); got != want {
			t.Errorf("content-init: %s = %q, want %q", env, got, want)
		}
		if s.DependsOn[svc].Condition != "service_healthy" {
			t.Errorf("content-init: should wait for %s to be healthy", svc)
		}
	}
	mk := readFile(t, "Makefile")
	if !regexp.MustCompile(`(?m)^\t\$\(COMPOSE\) run --rm content-init\s*$`).MatchString(mk) {
		t.Error("Makefile: no `$(COMPOSE) run --rm content-init` (make seed)")
	}
}

func TestDockerfile(t *testing.T) {
	df := readFile(t, "deploy/Dockerfile")
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 {
		t.Error("Dockerfile: no USER (the runtime stage must not run as root)")
	} else if u := users[len(users)-1][1]; u == "root" || u == "0" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root:") {
		t.Errorf("Dockerfile: final USER %s is root", u)
	}
	for _, want := range []string{"CGO_ENABLED=1", "./cmd/puchi", `ENTRYPOINT ["/usr/local/bin/puchi"]`, "PUCHI_DATA_DIR=/data", "curl"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile: lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^FROM golang:\S*bookworm\S* AS build`).MatchString(df) ||
		!regexp.MustCompile(`(?m)^FROM debian:bookworm-slim`).MatchString(df) {
		t.Error("Dockerfile: want a golang bookworm build stage and a debian:bookworm-slim runtime (glibc for librdkafka)")
	}
	// Every workspace module's go.mod is copied before `go mod download`.
	work := readFile(t, "go.work")
	block := regexp.MustCompile(`(?s)use\s*\((.*?)\)`).FindStringSubmatch(work)
	if block == nil {
		t.Fatal("go.work: no use ( ... ) block")
	}
	dl := strings.Index(df, "go mod download")
	if dl < 0 {
		t.Fatal("Dockerfile: no `go mod download` layer")
	}
	for _, m := range strings.Fields(block[1]) {
		m = strings.TrimPrefix(strings.TrimPrefix(m, "./"), ".")
		gomod := "go.mod"
		if m != "" {
			gomod = m + "/go.mod"
		}
		i := strings.Index(df, "COPY "+gomod+" ")
		if i < 0 || i > dl {
			t.Errorf("Dockerfile: %s is not copied before `go mod download`", gomod)
		}
	}

	// .dockerignore must keep what the build needs.
	ignore := readFile(t, ".dockerignore")
	for _, line := range strings.Split(ignore, "\n") {
		line = strings.TrimSpace(line)
		for _, need := range []string{"cmd", "gen", "platform", "services", "gateway", "internal", "go.work", "go.mod", "go.sum"} {
			if line == need || line == need+"/" || line == "/"+need {
				t.Errorf(".dockerignore excludes %s, which the build needs", need)
			}
		}
	}
}
