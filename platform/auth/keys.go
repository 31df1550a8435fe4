// Package auth issues and verifies Puchi's JWT access tokens and carries the
// verified caller through a request's context.
//
// Tokens are signed with Ed25519 ("EdDSA"). The verifier accepts only that
// algorithm, checks the issuer, audience, expiry, not-before and issued-at
// claims, and selects the key by the "kid" header (RFC 8725: an algorithm
// allowlist, no "none", no HMAC keyed with the public key).
package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyPair is an Ed25519 signing key and its key id. The zero value is not
// usable; get one from [GenerateKey], [LoadKey] or [LoadOrCreateKey].
// A KeyPair is immutable and safe for concurrent use.
type KeyPair struct {
	// ID is the key id placed in the "kid" header: the first 16 characters of
	// the base64url SHA-256 of the public key, so it is stable for a key.
	ID      string
	Private ed25519.PrivateKey
	Public  ed25519.PublicKey
}

// GenerateKey returns a fresh Ed25519 key pair.
func GenerateKey() (*KeyPair, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("auth: generate key: %w", err)
	}
	return newKeyPair(priv, pub), nil
}

func newKeyPair(priv ed25519.PrivateKey, pub ed25519.PublicKey) *KeyPair {
	return &KeyPair{ID: KeyID(pub), Private: priv, Public: pub}
}

// KeyID returns the key id used for pub in the "kid" header.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:])[:16]
}

// PrivatePEM encodes the private key as a PKCS #8 "PRIVATE KEY" PEM block.
func (k *KeyPair) PrivatePEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, fmt.Errorf("auth: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// PublicPEM encodes the public key as a PKIX "PUBLIC KEY" PEM block, the form
// services that only verify tokens are given.
func (k *KeyPair) PublicPEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Public)
	if err != nil {
		return nil, fmt.Errorf("auth: encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM decodes a PKCS #8 Ed25519 private key PEM block.
func ParsePrivateKeyPEM(data []byte) (*KeyPair, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("auth: no PRIVATE KEY PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: parse private key: %w", err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("auth: private key is %T, want Ed25519", key)
	}
	return newKeyPair(priv, priv.Public().(ed25519.PublicKey)), nil
}

// ParsePublicKeyPEM decodes an Ed25519 public key from a "PUBLIC KEY" PEM
// block, or derives it from a "PRIVATE KEY" block.
func ParsePublicKeyPEM(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("auth: no PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		kp, err := ParsePrivateKeyPEM(data)
		if err != nil {
			return nil, err
		}
		return kp.Public, nil
	case "PUBLIC KEY":
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: parse public key: %w", err)
		}
		pub, ok := key.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("auth: public key is %T, want Ed25519", key)
		}
		return pub, nil
	default:
		return nil, fmt.Errorf("auth: unexpected PEM block %q", block.Type)
	}
}

// LoadKey reads a PKCS #8 Ed25519 private key PEM file.
func LoadKey(path string) (*KeyPair, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read key: %w", err)
	}
	kp, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return kp, nil
}

// LoadPublicKey reads an Ed25519 public key from a PEM file holding either the
// public key or the private key.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read key: %w", err)
	}
	pub, err := ParsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return pub, nil
}

// LoadOrCreateKey loads the private key at path, or, if no file exists there,
// generates one and writes it with mode 0600 (creating parent directories
// with mode 0700). Creation is atomic: the key is written to a temporary file
// and hard-linked into place, so processes racing on first start all end up
// using the same key. An existing file that cannot be parsed is an error,
// never overwritten.
func LoadOrCreateKey(path string) (*KeyPair, error) {
	kp, err := LoadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return kp, err
	}
	kp, err = GenerateKey()
	if err != nil {
		return nil, err
	}
	data, err := kp.PrivatePEM()
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: create key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".jwt-key-*")
	if err != nil {
		return nil, fmt.Errorf("auth: create key: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp uses mode 0600 already; be explicit about the contract.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("auth: create key: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("auth: write key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("auth: write key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("auth: write key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadKey(path) // another process won the race
		}
		return nil, fmt.Errorf("auth: install key: %w", err)
	}
	return kp, nil
}
