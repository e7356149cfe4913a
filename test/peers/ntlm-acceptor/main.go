// ntlm-acceptor: a small IIS-like NTLMv2 front for the lab ADCS, used only by the peer tests.
//
// It authenticates the TCP connection (as IIS does): Type 1 → 401 + Type 2, Type 3 checked with
// go-ntlm (Debian's golang-github-thomsonreuterseikon-go-ntlm-dev; NTLMv2 only) against one
// user and password, then every request on that connection is proxied to the upstream certsrv
// with the lab's Basic credentials added. A failed Type 3 answers 401 with a fresh
// "WWW-Authenticate: NTLM" (as IIS does) and forgets the handshake.
//
// Built at test time in GOPATH mode from /usr/share/gocode (no network): see scripts/peers/.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/ThomsonReutersEikon/go-ntlm/ntlm"
)

type connState struct {
	mu            sync.Mutex
	session       ntlm.ServerSession
	authenticated string
}

type ctxKey struct{}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	portFile := flag.String("port-file", "", "write the bound port here once listening")
	upstream := flag.String("upstream", "", "upstream certsrv origin (https://127.0.0.1:port)")
	upstreamCA := flag.String("upstream-ca", "", "PEM trust for the upstream")
	upstreamAuth := flag.String("upstream-basic", "", "user:password the proxy presents upstream (Basic)")
	user := flag.String("user", "", "the one NTLM user (without domain)")
	domain := flag.String("domain", "", "its domain")
	passwordFile := flag.String("password-file", "", "its password (one line)")
	flag.Parse()

	pw, err := os.ReadFile(*passwordFile)
	if err != nil {
		log.Fatalf("password file: %v", err)
	}
	password := strings.TrimRight(string(pw), "\r\n")
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		log.Fatalf("bad -upstream %q", *upstream)
	}
	pool := x509.NewCertPool()
	if *upstreamCA != "" {
		pem, err := os.ReadFile(*upstreamCA)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			log.Fatalf("upstream CA file unusable: %v", err)
		}
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(*upstreamAuth))
	director := proxy.Director
	proxy.Director = func(r *http.Request) {
		director(r)
		r.Host = target.Host
		r.Header.Set("Authorization", basic)
	}

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := r.Context().Value(ctxKey{}).(*connState)
		st.mu.Lock()
		defer st.mu.Unlock()
		header := r.Header.Get("Authorization")
		if header == "" && st.authenticated != "" {
			log.Printf("%s %s as %s (connection already authenticated)", r.Method, r.URL.Path, st.authenticated)
			proxy.ServeHTTP(w, r)
			return
		}
		challenge := func(token string, reason string) {
			log.Printf("%s %s: 401 %s", r.Method, r.URL.Path, reason)
			if token == "" {
				w.Header().Set("WWW-Authenticate", "NTLM")
			} else {
				w.Header().Set("WWW-Authenticate", "NTLM "+token)
			}
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, "<html><body>401 - Unauthorized: Access is denied due to invalid credentials.</body></html>")
		}
		if !strings.HasPrefix(header, "NTLM ") {
			st.session, st.authenticated = nil, ""
			challenge("", "no NTLM credentials")
			return
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(header[5:]))
		if err != nil || len(raw) < 12 || string(raw[:8]) != "NTLMSSP\x00" {
			st.session, st.authenticated = nil, ""
			challenge("", "not an NTLMSSP message")
			return
		}
		switch raw[8] {
		case 1:
			session, _ := ntlm.CreateServerSession(ntlm.Version2, ntlm.ConnectionOrientedMode)
			session.SetUserInfo(*user, password, *domain)
			cm, err := session.(*ntlm.V2ServerSession).GenerateChallengeMessage()
			if err != nil {
				challenge("", "cannot make a challenge: "+err.Error())
				return
			}
			st.session, st.authenticated = session, ""
			challenge(base64.StdEncoding.EncodeToString(cm.Bytes()), "type 1 → type 2")
		case 3:
			session := st.session
			st.session = nil
			if session == nil {
				challenge("", "type 3 without a type 1 on this connection")
				return
			}
			am, err := ntlm.ParseAuthenticateMessage(raw, 2)
			if err != nil {
				challenge("", "unparsable type 3 (NTLMv2 only): "+err.Error())
				return
			}
			name := am.UserName.String()
			if at := strings.IndexByte(name, '@'); at > 0 && am.DomainName.String() == "" {
				name = name[:at] // UPN form user@domain, domain field empty (MS-NLMP)
			}
			if !strings.EqualFold(name, *user) {
				challenge("", "unknown user "+am.UserName.String())
				return
			}
			if err := session.(*ntlm.V2ServerSession).ProcessAuthenticateMessage(am); err != nil {
				challenge("", "bad NTLMv2 response for "+am.UserName.String()+": "+err.Error())
				return
			}
			st.authenticated = am.DomainName.String() + "\\" + am.UserName.String()
			log.Printf("%s %s as %s (NTLMv2)", r.Method, r.URL.Path, st.authenticated)
			proxy.ServeHTTP(w, r)
		default:
			challenge("", fmt.Sprintf("unexpected NTLM message type %d", raw[8]))
		}
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	if *portFile != "" {
		port := ln.Addr().(*net.TCPAddr).Port
		if err := os.WriteFile(*portFile, []byte(fmt.Sprintf("%d\n", port)), 0o644); err != nil {
			log.Fatalf("port file: %v", err)
		}
	}
	server := &http.Server{
		Handler:     handler,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, ctxKey{}, &connState{}) },
	}
	log.Printf("ntlm-acceptor on %s → %s", ln.Addr(), *upstream)
	log.Fatal(server.Serve(ln))
}
