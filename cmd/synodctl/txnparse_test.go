package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// describeCmp renders a compare canonically, e.g. `MOD("k") GREATER 5`.
func describeCmp(c clientv3.Cmp) string {
	pc := c.GetCompare()
	s := fmt.Sprintf("%s(%q", pc.GetTarget(), pc.GetKey())
	if pc.GetRangeEnd() != nil {
		s += fmt.Sprintf(", %q", pc.GetRangeEnd())
	}
	s += ") " + pc.GetResult().String() + " "
	switch u := pc.GetTargetUnion().(type) {
	case *pb.Compare_Value:
		s += fmt.Sprintf("%q", u.Value)
	case *pb.Compare_Version:
		s += fmt.Sprint(u.Version)
	case *pb.Compare_CreateRevision:
		s += fmt.Sprint(u.CreateRevision)
	case *pb.Compare_ModRevision:
		s += fmt.Sprint(u.ModRevision)
	case *pb.Compare_Lease:
		s += fmt.Sprintf("lease:%x", u.Lease)
	}
	return s
}

func describeTxn(req *txnRequest) string {
	var lines []string
	for _, c := range req.compares {
		lines = append(lines, "if "+describeCmp(c))
	}
	for _, op := range req.success {
		lines = append(lines, "then "+describeOp(op))
	}
	for _, op := range req.failure {
		lines = append(lines, "else "+describeOp(op))
	}
	return strings.Join(lines, "\n")
}

func TestParseTxn(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{
			name: "all sections",
			input: `mod("key1") > "0"
value("key2") = "x"

put key1 "overwrote key1"
get key2

put key1 "created key1"
put key2 'some extra key'
`,
			want: `if MOD("key1") GREATER 0
if VALUE("key2") EQUAL "x"
then put "key1" val="overwrote key1"
then get "key2"
else put "key1" val="created key1"
else put "key2" val="some extra key"`,
		},
		{
			name:  "every target and operator",
			input: "version(\"k\") = \"2\"\ncreate(\"k\") = \"0\"\nmod(\"k\") < \"10\"\nvalue(\"k\") != \"v\"\nlease(\"k\") = \"694d77aa9e38260f\"\n",
			want: `if VERSION("k") EQUAL 2
if CREATE("k") EQUAL 0
if MOD("k") LESS 10
if VALUE("k") NOT_EQUAL "v"
if LEASE("k") EQUAL lease:694d77aa9e38260f`,
		},
		{
			name:  "short target names, unquoted words, == and no spaces",
			input: "m(k)>5\nc( k ) == 0\nver(\"k\")=1\nval('k') = 'a b'\n",
			want: `if MOD("k") GREATER 5
if CREATE("k") EQUAL 0
if VERSION("k") EQUAL 1
if VALUE("k") EQUAL "a b"`,
		},
		{
			name:  "compare over a range",
			input: "mod(\"a\", \"c\") < \"100\"\n",
			want:  `if MOD("a", "c") LESS 100`,
		},
		{
			name:  "escapes in keys and values",
			input: "value(\"k\\x00\") = \"a\\nb\"\n\nput \"k\\x00\" \"tab\\there\"\n",
			want:  "if VALUE(\"k\\x00\") EQUAL \"a\\nb\"\nthen put \"k\\x00\" val=\"tab\\there\"",
		},
		{
			name:  "no compares",
			input: "\nput k v\n\nput k w\n",
			want:  "then put \"k\" val=\"v\"\nelse put \"k\" val=\"w\"",
		},
		{
			name:  "only a failure section",
			input: "mod(\"k\") = \"0\"\n\n\ndel k\n",
			want:  "if MOD(\"k\") EQUAL 0\nelse del \"k\"",
		},
		{
			name:  "request flags",
			input: "\nput --prev-kv k v\nget --prefix --limit=2 --keys-only dir/\ndel k z --prev-kv\nget --count-only --rev 4 a b\nput k --ignore-value --lease 1f\n",
			want: `then put "k" val="v" prev-kv
then get "dir/" end="dir0" limit=2 keys-only
then del "k" end="z" prev-kv
then get "a" end="b" rev=4 count-only
then put "k" val="" lease=1f ignore-value`,
		},
		{
			name:  "values with spaces and adjacent quotes join",
			input: "\nput k \"hello world\"\nput k2 pre\"fix\"'ed'\nput k3 \"\"\n",
			want:  "then put \"k\" val=\"hello world\"\nthen put \"k2\" val=\"prefixed\"\nthen put \"k3\" val=\"\"",
		},
		{
			name:  "windows line endings and blank-looking lines",
			input: "mod(\"k\") > \"0\"\r\n \t\r\nput k v\r\n",
			want:  "if MOD(\"k\") GREATER 0\nthen put \"k\" val=\"v\"",
		},
		{
			name:  "trailing blank lines after the failure section",
			input: "\n\nput k v\n\n\n\n",
			want:  "else put \"k\" val=\"v\"",
		},
		{
			name:  "empty input",
			input: "",
			want:  "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := parseTxn(strings.NewReader(tt.input), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := describeTxn(req); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestParseTxnErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{"unknown target", `modd("k") > "1"`, `line 1 (compares): unknown compare target "modd": want mod, create, version, value or lease`},
		{"request in compares", "put k v\n", `line 1 (compares): "put k v" is a request, not a compare: the compares come first (start with a blank line if there are none)`},
		{"missing paren", `mod "k" > "1"`, `want "(" after mod`},
		{"missing key", `mod() > "1"`, `want a key inside mod(...)`},
		{"missing close paren", `mod("k" > "1"`, `want ")" after the key`},
		{"missing operator", `mod("k") "1"`, `want an operator (=, !=, < or >)`},
		{"unsupported operator", `mod("k") >= "1"`, `operator ">=" is not supported`},
		{"bang alone", `mod("k") ! "1"`, `"!" must be followed by "="`},
		{"missing value", `mod("k") >`, `want a value after ">"`},
		{"trailing junk", `mod("k") > "1" "2"`, `unexpected "2" after the value`},
		{"non-numeric revision", `mod("k") > "abc"`, `bad mod value "abc": want a non-negative integer`},
		{"negative version", `version("k") = "-1"`, `bad version value "-1"`},
		{"bad lease", `lease("k") = "zz"`, `bad lease ID "zz"`},
		{"unterminated quote", `value("k) = "v"`, `bad compare`},
		{"unterminated quote at end", `value("k") = "v`, `unterminated " quote`},
		{"bad escape", `value("k\q") = "v"`, `bad quoted string`},
		{"range end missing", `mod("a", ) > "1"`, `want a range end after the ","`},
		{"no target", `("k") > "1"`, `bad compare`},
		{"line number counts", "mod(\"k\") > \"1\"\n\nput k v\nfrob k\n", `line 4 (success requests): unknown request "frob": want put, get or del`},
		{"compare after compares", "\nmod(\"k\") > \"1\"\n", `line 2 (success requests): "mod(\"k\") > \"1\"" looks like a compare, but the compares section has ended`},
		{"put without value", "\nput k\n", `line 2 (success requests): put: put needs a value (or --ignore-value)`},
		{"put too many", "\nput k v w\n", `put expects <key> <value>, got 3 argument(s)`},
		{"get without key", "\n\nget\n", `line 3 (failure requests): get expects <key> [range_end], got 0 argument(s)`},
		{"unknown request flag", "\nget --nope k\n", `get: unknown flag: --nope`},
		{"bad request flag value", "\nget --limit x k\n", `get: invalid argument "x" for "--limit"`},
		{"conflicting request flags", "\ndel k z --prefix\n", `del: range_end cannot be given with --prefix`},
		{"unterminated in request", "\nput k \"v\n", `unterminated " quote`},
		{"a fourth section", "\nput k v\n\nput k w\n\nput k x\n", `line 6: unexpected "put k x" after the failure requests`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseTxn(strings.NewReader(tt.input), nil)
			if err == nil {
				t.Fatalf("parsed %q without error", tt.input)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseTxnInteractive(t *testing.T) {
	var prompts bytes.Buffer
	// In interactive mode parsing stops after the third section: what
	// follows is never read (a user at a terminal would not type EOF).
	input := "mod(\"k\") > \"0\"\n\nput k v\n\nput k w\n\nthis is never read\n"
	req, err := parseTxn(strings.NewReader(input), &prompts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describeTxn(req), "if MOD(\"k\") GREATER 0\nthen put \"k\" val=\"v\"\nelse put \"k\" val=\"w\""; got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	wantPrompts := "compares:\n\nsuccess requests (get, put, del):\n\nfailure requests (get, put, del):\n"
	if prompts.String() != wantPrompts {
		t.Errorf("prompts %q, want %q", prompts.String(), wantPrompts)
	}
}

func TestSplitWords(t *testing.T) {
	tests := map[string][]string{
		`put k v`:               {"put", "k", "v"},
		"  put\tk   v  ":        {"put", "k", "v"},
		`put "a b" 'c d'`:       {"put", "a b", "c d"},
		`put k ""`:              {"put", "k", ""},
		`put k "say \"hi\""`:    {"put", "k", `say "hi"`},
		`put k 'no \n escapes'`: {"put", "k", `no \n escapes`},
		`put k a"b"c`:           {"put", "k", "abc"},
		``:                      nil,
	}
	for in, want := range tests {
		got, err := splitWords(in)
		if err != nil {
			t.Errorf("splitWords(%q): %v", in, err)
			continue
		}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Errorf("splitWords(%q) = %q, want %q", in, got, want)
		}
	}
}
