package promotiongates

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// vectorFile is the routing specification every binding must pass (tests/vectors/).
var vectorFile = filepath.Join("..", "..", "tests", "vectors", "routing.json")

type routingVector struct {
	Name   string  `json:"name"`
	Salt   string  `json:"salt"`
	ID     *string `json:"id"`
	IDHex  *string `json:"id_hex"`
	IDRule *struct {
		Repeat string `json:"repeat"`
		Length int    `json:"length"`
	} `json:"id_rule"`
	TrafficPercent float64 `json:"traffic_percent"`
	Bucket         uint32  `json:"bucket"`
	Threshold      uint32  `json:"threshold"`
	IsCanary       bool    `json:"is_canary"`
	DigestPrefix   string  `json:"digest_prefix"`
}

// requestID expands the vector's id as the file's header says: exactly one of id (UTF-8),
// id_hex (raw bytes) and id_rule (repeat s, cut to exactly length bytes).
func (v routingVector) requestID() ([]byte, error) {
	forms := 0
	var id []byte
	if v.ID != nil {
		forms++
		id = []byte(*v.ID)
	}
	if v.IDHex != nil {
		forms++
		b, err := hex.DecodeString(*v.IDHex)
		if err != nil {
			return nil, err
		}
		id = b
	}
	if v.IDRule != nil {
		forms++
		if v.IDRule.Repeat == "" {
			return nil, fmt.Errorf("empty id_rule.repeat")
		}
		rep := bytes.Repeat([]byte(v.IDRule.Repeat), v.IDRule.Length/len(v.IDRule.Repeat)+1)
		id = rep[:v.IDRule.Length]
	}
	if forms != 1 {
		return nil, fmt.Errorf("%d id forms, want exactly 1", forms)
	}
	return id, nil
}

// overriddenRule is the header's `overridden` rule: every vector routes the same through a
// gate with these overrides, with no forcing value and with IgnoredValue, and is not forced.
type overriddenRule struct {
	Overrides    Overrides `json:"overrides"`
	IgnoredValue string    `json:"ignored_value"`
}

func loadVectors(t *testing.T) []routingVector {
	t.Helper()
	vectors, _ := loadVectorFile(t)
	return vectors
}

// loadVectorFile reads the vectors and the header's overridden rule.
func loadVectorFile(t *testing.T) ([]routingVector, overriddenRule) {
	t.Helper()
	raw, err := os.ReadFile(vectorFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Header struct {
			FormatVersion int            `json:"format_version"`
			Overridden    overriddenRule `json:"overridden"`
		} `json:"header"`
		Vectors []routingVector `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if file.Header.FormatVersion != 1 {
		t.Fatalf("format_version %d, this test reads 1", file.Header.FormatVersion)
	}
	if len(file.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	return file.Vectors, file.Header.Overridden
}

// canaryConfig is a config in Canary{percent} with the given salt.
func canaryConfig(salt string, percent float64) string {
	return canaryConfigWith(salt, percent, nil)
}

// canaryConfigWith is canaryConfig with the given overrides (nil for none).
func canaryConfigWith(salt string, percent float64, overrides *Overrides) string {
	cfg := DefaultConfig()
	cfg.Environment, cfg.TrafficPercent, cfg.Salt, cfg.Overrides = Canary, percent, salt, overrides
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestRoutingVectors(t *testing.T) {
	vectors, overridden := loadVectorFile(t)
	gates := map[string]*Gate{}
	overriding := map[string]*Gate{} // the same with the header's overrides
	forms := map[string]int{}
	key := func(v routingVector) string { return fmt.Sprintf("%s\x00%v", v.Salt, v.TrafficPercent) }
	for _, v := range vectors { // one gate per salt and percentage, closed when the test ends
		if gates[key(v)] == nil {
			gates[key(v)] = newGate(t, canaryConfig(v.Salt, v.TrafficPercent), "")
			overriding[key(v)] = newGate(t,
				canaryConfigWith(v.Salt, v.TrafficPercent, &overridden.Overrides), "")
		}
	}
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			id, err := v.requestID()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case v.IDHex != nil:
				forms["id_hex"]++
			case v.IDRule != nil:
				forms["id_rule"]++
			default:
				forms["id"]++
			}
			g := gates[key(v)]
			d, err := g.Route(id)
			ok(t, err)
			if d.Bucket() != v.Bucket || d.Threshold() != v.Threshold || d.IsCanary() != v.IsCanary {
				t.Fatalf("got bucket %d threshold %d canary %v, want %d %d %v (digest prefix %s)",
					d.Bucket(), d.Threshold(), d.IsCanary(), v.Bucket, v.Threshold, v.IsCanary, v.DigestPrefix)
			}
			if d.Environment() != Canary || d.TrafficPercent() != v.TrafficPercent {
				t.Fatalf("decision says %v %v, want canary %v", d.Environment(), d.TrafficPercent(), v.TrafficPercent)
			}
			if s, err := g.RouteString(string(id)); err != nil || s != d {
				t.Fatalf("RouteString %+v != Route %+v", s, d)
			}
			if b, x := referenceBucket(v.Salt, id); b != v.Bucket || fmt.Sprintf("%016x", x) != v.DigestPrefix {
				t.Fatalf("the Go reference gives bucket %d prefix %016x", b, x)
			}
			// The header's overridden rule: the override path routes as the quick one.
			o := overriding[key(v)]
			for _, c := range []struct {
				how   string
				route func() (Decision, error)
			}{
				{"no forcing value", func() (Decision, error) { return o.Route(id) }},
				{"an ignored forcing value", func() (Decision, error) {
					return o.RouteForced(id, []byte(overridden.IgnoredValue))
				}},
			} {
				d, err := c.route()
				ok(t, err)
				if d.Bucket() != v.Bucket || d.Threshold() != v.Threshold || d.IsCanary() != v.IsCanary ||
					d.ForcedBy() != NotForced {
					t.Errorf("with overrides, %s: got bucket %d threshold %d canary %v forced %v, want %d %d %v not forced",
						c.how, d.Bucket(), d.Threshold(), d.IsCanary(), d.ForcedBy(), v.Bucket, v.Threshold, v.IsCanary)
				}
			}
		})
	}
	if forms["id"] == 0 || forms["id_hex"] == 0 || forms["id_rule"] == 0 {
		t.Fatalf("every id form should be exercised: %v", forms)
	}
}

// referenceBucket is the header's formula, written from it alone: the bucket and x.
func referenceBucket(salt string, id []byte) (uint32, uint64) {
	saltHash := sha256.Sum256([]byte(salt))
	block := make([]byte, 64, 64+len(id))
	copy(block, saltHash[:])
	digest := sha256.Sum256(append(block, id...))
	x := binary.BigEndian.Uint64(digest[:8])
	hi, _ := bits.Mul64(x, 10_000_000) // floor(x * 10^7 / 2^64)
	return uint32(hi), x
}

// referenceThreshold is round_half_away_from_zero(percent * 100000), clamped.
func referenceThreshold(percent float64) uint32 {
	return uint32(math.Max(0, math.Min(10_000_000, math.Round(percent*100_000))))
}

// TestRoutingMatchesTheFormula routes random ids, salts and percentages and compares with the
// Go reference.
func TestRoutingMatchesTheFormula(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, salt := range []string{"default", "checkout", "café-☕-gate"} {
		percent := math.Round(rng.Float64()*100*1e5) / 1e5
		g := newGate(t, canaryConfig(salt, percent), "")
		for range 200 {
			id := make([]byte, rng.IntN(80))
			for i := range id {
				id[i] = byte(rng.UintN(256))
			}
			d, err := g.Route(id) // no collection per id here: the GC hammer covers bulk loops
			if err != nil {
				t.Fatal(err)
			}
			bucket, _ := referenceBucket(salt, id)
			threshold := referenceThreshold(percent)
			if d.Bucket() != bucket || d.Threshold() != threshold || d.IsCanary() != (bucket < threshold) {
				t.Fatalf("salt %q percent %v id %x: got %d/%d/%v, want %d/%d", salt, percent, id,
					d.Bucket(), d.Threshold(), d.IsCanary(), bucket, threshold)
			}
		}
	}
}
