package grpcx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// TLS material for mutual TLS between services. Every process has one
// identity (a certificate and key) and trusts one CA: servers require client
// certificates signed by the CA, clients check that the server's certificate
// is signed by the CA and names the service they dial.

// Identity is a process's certificate and the CA pool it trusts.
type Identity struct {
	Cert tls.Certificate
	CAs  *x509.CertPool
}

// LoadIdentity reads a CA bundle and a certificate/key pair (PEM; cert and
// key may be the same file).
func LoadIdentity(caFile, certFile, keyFile string) (*Identity, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("grpcx: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("grpcx: %s holds no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("grpcx: load certificate %s / key %s: %w", certFile, keyFile, err)
	}
	return &Identity{Cert: cert, CAs: pool}, nil
}

// ServerTLS requires and verifies client certificates against the CA (TLS 1.3).
func (id *Identity) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		ClientCAs:    id.CAs,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// ClientTLS presents the identity's certificate and verifies servers against
// the CA; [NewClient] sets ServerName to the dialled service's name.
func (id *Identity) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		RootCAs:      id.CAs,
	}
}

// DevCA is a development certificate authority kept in a folder: ca.pem (the
// certificate, to trust) and ca-key.pem (certificate and key, 0600).
type DevCA struct {
	Dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// CAFile is the path of the CA certificate (what clients such as grpcurl trust).
func (ca *DevCA) CAFile() string { return filepath.Join(ca.Dir, "ca.pem") }

// LoadOrCreateDevCA loads the CA in dir, creating it (ECDSA P-256, ten years)
// on first use. Creation is safe against concurrent processes sharing dir:
// the key file is published with an exclusive link, so all of them end up
// with the same CA.
func LoadOrCreateDevCA(dir string) (*DevCA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("grpcx: tls folder: %w", err)
	}
	keyFile := filepath.Join(dir, "ca-key.pem")
	if _, err := os.Stat(keyFile); errors.Is(err, os.ErrNotExist) {
		b, err := newCA()
		if err != nil {
			return nil, err
		}
		if err := publishExclusive(keyFile, b); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("grpcx: read CA: %w", err)
	}
	cert, key, err := parsePair(b)
	if err != nil {
		return nil, fmt.Errorf("grpcx: %s: %w", keyFile, err)
	}
	ca := &DevCA{Dir: dir, cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}
	// ca.pem is derived from the key file: every writer writes the same bytes.
	if cur, err := os.ReadFile(ca.CAFile()); err != nil || string(cur) != string(ca.pem) {
		if err := writeAtomic(ca.CAFile(), ca.pem, 0o644); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

// Identity returns the identity of name from <dir>/<name>.pem (certificate
// and key in one file), issuing it when missing, expiring within 30 days, or
// not signed by this CA. The certificate names name, localhost, 127.0.0.1 and
// ::1, and is valid for server and client authentication.
func (ca *DevCA) Identity(name string) (*Identity, string, error) {
	file := filepath.Join(ca.Dir, name+".pem")
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	if b, err := os.ReadFile(file); err == nil {
		if c, _, err := parsePair(b); err == nil && ca.valid(c, name) {
			if tc, err := tls.X509KeyPair(b, b); err == nil {
				return &Identity{Cert: tc, CAs: pool}, file, nil
			}
		}
	}
	b, err := ca.issue(name)
	if err != nil {
		return nil, "", err
	}
	if err := writeAtomic(file, b, 0o600); err != nil {
		return nil, "", err
	}
	tc, err := tls.X509KeyPair(b, b)
	if err != nil {
		return nil, "", err
	}
	return &Identity{Cert: tc, CAs: pool}, file, nil
}

func (ca *DevCA) valid(c *x509.Certificate, name string) bool {
	if time.Until(c.NotAfter) < 30*24*time.Hour || !slices.Contains(c.DNSNames, name) {
		return false
	}
	return c.CheckSignatureFrom(ca.cert) == nil
}

func (ca *DevCA) issue(name string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Puchi dev"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("grpcx: issue certificate for %s: %w", name, err)
	}
	return encodePair(der, key)
}

func newCA() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Puchi dev CA", Organization: []string{"Puchi dev"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("grpcx: create dev CA: %w", err)
	}
	return encodePair(der, key)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func encodePair(der []byte, key *ecdsa.PrivateKey) ([]byte, error) {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})...), nil
}

func parsePair(b []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	var cert *x509.Certificate
	var key *ecdsa.PrivateKey
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			if cert == nil {
				c, err := x509.ParseCertificate(blk.Bytes)
				if err != nil {
					return nil, nil, err
				}
				cert = c
			}
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, nil, err
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, nil, errors.New("not an ECDSA key")
			}
			key = ek
		}
	}
	if cert == nil || key == nil {
		return nil, nil, errors.New("want a CERTIFICATE and a PRIVATE KEY block")
	}
	return cert, key, nil
}

// writeAtomic writes a file through a temporary file and a rename.
func writeAtomic(path string, b []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("grpcx: write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("grpcx: write %s: %w", path, err)
	}
	return nil
}

// publishExclusive creates path with b unless it exists (os.ErrExist): the
// content is complete before the name appears.
func publishExclusive(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o600); err != nil {
		return err
	}
	return os.Link(f.Name(), path)
}
