package tlsca

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

func TestEnsureIssuesOnceAndReissuesForNewNames(t *testing.T) {
	dir := t.TempDir()
	p, made, err := Ensure(dir, []string{"127.0.0.1", "coord.example"})
	if err != nil || !made {
		t.Fatalf("first Ensure: made=%v err=%v", made, err)
	}
	fp1, _ := Fingerprint(p.CA)
	if _, made, err = Ensure(dir, []string{"127.0.0.1"}); err != nil || made {
		t.Fatalf("second Ensure with covered names: made=%v err=%v", made, err)
	}
	if _, made, err = Ensure(dir, []string{"10.0.0.5"}); err != nil || !made {
		t.Fatalf("Ensure with a new name: made=%v err=%v", made, err)
	}
	if fp2, _ := Fingerprint(p.CA); fp2 != fp1 {
		t.Fatal("the CA changed when only the certificate had to")
	}
	if st, _ := os.Stat(p.Key); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode().Perm())
	}
	pair, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	pem, _ := os.ReadFile(p.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.0.0.5"}); err != nil {
		t.Fatalf("issued certificate does not verify for 10.0.0.5: %v", err)
	}
}
