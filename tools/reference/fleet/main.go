// fleet serves N health engines with Go's net/http, the server the
// reference worker talks to, on loopback until standard input closes: the
// engines for comparing workers (benches/README.md, "Floors").
//
//	fleet [-tls CA.pem] [-hang K] [-addr 127.0.0.1] [-port P] RECORDS.json N
//
// Writes the records file (DESIGN.md's format), prints "ready N" on stdout
// and serves; when standard input closes, prints "requests R", the health
// requests answered, and exits. Every engine answers GET /healthz with 200 "ok", keeping
// connections alive as net/http does; with -hang K, every K-th engine
// (the first of each K) never answers. With -tls CA.pem the engines serve
// HTTPS (TLS 1.2 and 1.3, HTTP/2 by ALPN, as net/http does) with an ECDSA
// P-256 certificate for the address from a CA made now, whose certificate
// is written to CA.pem. With -port P the engines listen on P, P+1, ...
// (below the ephemeral range, so that many clients' connect calls need not
// search for a free port); else on ports the kernel picks.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

type record struct {
	GameID             string `json:"game_id"`
	CurrentContainerID string `json:"current_container_id"`
	EngineEndpoint     string `json:"engine_endpoint"`
	Status             string `json:"status"`
}

func main() {
	caPath := flag.String("tls", "", "serve HTTPS; write the CA certificate here")
	hang := flag.Int("hang", 0, "every K-th engine never answers")
	addr := flag.String("addr", "127.0.0.1", "the loopback address to listen on")
	port := flag.Int("port", 0, "first port (0: ports the kernel picks)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: fleet [-tls CA.pem] [-hang K] [-addr A] [-port P] RECORDS.json N")
		os.Exit(2)
	}
	count, err := strconv.Atoi(flag.Arg(1))
	check(err)

	var answered atomic.Int64
	healthy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answered.Add(1)
		w.Write([]byte("ok"))
	})
	hung := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	var tlsConfig *tls.Config
	scheme := "http"
	if *caPath != "" {
		tlsConfig = serverTLS(*caPath, *addr)
		scheme = "https"
	}

	records := make([]record, 0, count)
	for i := 0; i < count; i++ {
		listenOn := *addr + ":0"
		if *port != 0 {
			listenOn = net.JoinHostPort(*addr, strconv.Itoa(*port+i))
		}
		listener, err := net.Listen("tcp", listenOn)
		check(err)
		handler := healthy
		if *hang > 0 && i%*hang == 0 {
			handler = hung
		}
		server := &http.Server{Handler: handler, TLSConfig: tlsConfig}
		if tlsConfig != nil {
			go server.ServeTLS(listener, "", "")
		} else {
			go server.Serve(listener)
		}
		records = append(records, record{
			GameID:             "g" + strconv.Itoa(i),
			CurrentContainerID: "c" + strconv.Itoa(i),
			EngineEndpoint:     scheme + "://" + listener.Addr().String(),
			Status:             "running",
		})
	}
	out, err := json.Marshal(records)
	check(err)
	check(os.WriteFile(flag.Arg(0), out, 0o644))
	fmt.Printf("ready %d\n", count)
	io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	fmt.Printf("requests %d\n", answered.Load())
}

// serverTLS makes a CA (written to caPath) and a certificate for host it signed.
func serverTLS(caPath, host string) *tls.Config {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "healthprobe fleet CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	check(err)
	ca, err := x509.ParseCertificate(caDER)
	check(err)
	check(os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644))

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	leafTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP(host)},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTemplate, ca, &key.PublicKey, caKey)
	check(err)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}
