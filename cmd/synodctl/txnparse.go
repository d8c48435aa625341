package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A transaction on standard input has three sections, each ended by a blank
// line (or the end of input):
//
//	mod("key1") > "0"           <- compares, one per line
//	value("key2") = "x"
//
//	put key1 "new value"        <- success requests: put, get or del
//	get key2
//
//	put key1 "created"          <- failure requests
//
// A compare is TARGET("key"[, "range_end"]) OP VALUE with TARGET one of mod,
// create, version, value or lease (short forms m, c, ver, val), OP one of
// =, !=, < or >, and VALUE a revision or version number for mod, create and
// version, a hexadecimal lease ID for lease, and any string for value.
// Keys and values are Go-quoted strings ("a\tb"), single-quoted literals, or
// bare words. Requests take the flags of the commands of the same name.

// txnRequest is a parsed transaction.
type txnRequest struct {
	compares []clientv3.Cmp
	success  []clientv3.Op
	failure  []clientv3.Op
}

// txnSections names the three sections and their interactive prompts.
var txnSections = []struct{ name, prompt string }{
	{"compares", "compares:"},
	{"success requests", "success requests (get, put, del):"},
	{"failure requests", "failure requests (get, put, del):"},
}

// parseTxn reads a transaction from r. With a non-nil prompt writer it writes
// a prompt before each section (interactive mode) and stops reading after the
// third section; otherwise it reads r to its end and rejects anything but
// blank lines after the third section.
func parseTxn(r io.Reader, prompt io.Writer) (*txnRequest, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 64<<20)
	req := &txnRequest{}
	lineNo := 0
	eof := false
	next := func() (string, bool, error) {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return "", false, fmt.Errorf("reading the transaction after line %d: %w", lineNo, err)
			}
			return "", false, nil
		}
		lineNo++
		return strings.TrimRight(sc.Text(), "\r"), true, nil
	}
	for si, sec := range txnSections {
		if prompt != nil {
			if si > 0 {
				fmt.Fprintln(prompt)
			}
			fmt.Fprintln(prompt, sec.prompt)
		}
		for {
			line, ok, err := next()
			if err != nil {
				return nil, err
			}
			if !ok {
				eof = true
				break
			}
			if strings.TrimSpace(line) == "" {
				break
			}
			if si == 0 {
				cmp, err := parseCompare(line)
				if err != nil {
					return nil, fmt.Errorf("line %d (%s): %w", lineNo, sec.name, err)
				}
				req.compares = append(req.compares, cmp)
				continue
			}
			op, err := parseTxnOp(line)
			if err != nil {
				return nil, fmt.Errorf("line %d (%s): %w", lineNo, sec.name, err)
			}
			if si == 1 {
				req.success = append(req.success, op)
			} else {
				req.failure = append(req.failure, op)
			}
		}
		if eof {
			break
		}
	}
	if prompt != nil || eof {
		return req, nil
	}
	for {
		line, ok, err := next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return req, nil
		}
		if strings.TrimSpace(line) != "" {
			return nil, fmt.Errorf("line %d: unexpected %q after the failure requests: a transaction has only three sections (compares, success requests, failure requests), each ended by a blank line", lineNo, line)
		}
	}
}

// compareTargets maps the names a compare may use to its target.
var compareTargets = map[string]func(string) clientv3.Cmp{
	"mod":     clientv3.ModRevision,
	"m":       clientv3.ModRevision,
	"create":  clientv3.CreateRevision,
	"c":       clientv3.CreateRevision,
	"version": clientv3.Version,
	"ver":     clientv3.Version,
	"value":   clientv3.Value,
	"val":     clientv3.Value,
	"lease":   clientv3.LeaseValue,
}

// parseCompare parses one compare line such as mod("key") > "5".
func parseCompare(line string) (clientv3.Cmp, error) {
	toks, err := lexCompare(line)
	if err != nil {
		return clientv3.Cmp{}, fmt.Errorf("bad compare %q: %w", line, err)
	}
	p := &cmpParser{toks: toks}
	target, ok := p.word()
	if !ok {
		return clientv3.Cmp{}, fmt.Errorf("bad compare %q: want TARGET(\"key\") OP \"value\", e.g. mod(\"k\") > \"5\"", line)
	}
	name := strings.ToLower(target)
	mk, ok := compareTargets[name]
	if !ok {
		if name == "put" || name == "get" || name == "del" || name == "delete" {
			return clientv3.Cmp{}, fmt.Errorf("%q is a request, not a compare: the compares come first (start with a blank line if there are none)", line)
		}
		return clientv3.Cmp{}, fmt.Errorf("unknown compare target %q: want mod, create, version, value or lease", target)
	}
	if !p.punct("(") {
		return clientv3.Cmp{}, fmt.Errorf("bad compare %q: want \"(\" after %s", line, target)
	}
	key, ok := p.str()
	if !ok {
		return clientv3.Cmp{}, fmt.Errorf("bad compare %q: want a key inside %s(...)", line, target)
	}
	var end *string
	if p.punct(",") {
		e, ok := p.str()
		if !ok {
			return clientv3.Cmp{}, fmt.Errorf("bad compare %q: want a range end after the \",\"", line)
		}
		end = &e
	}
	if !p.punct(")") {
		return clientv3.Cmp{}, fmt.Errorf("bad compare %q: want \")\" after the key", line)
	}
	op, ok := p.operator()
	if !ok {
		return clientv3.Cmp{}, fmt.Errorf("bad compare %q: want an operator (=, !=, < or >) after %s(...)", line, target)
	}
	val, ok := p.str()
	if !ok {
		return clientv3.Cmp{}, fmt.Errorf("bad compare %q: want a value after %q", line, op)
	}
	if !p.done() {
		return clientv3.Cmp{}, fmt.Errorf("bad compare %q: unexpected %q after the value", line, p.toks[p.i].text)
	}
	var v any
	switch name {
	case "value", "val":
		v = val
	case "lease":
		id, err := parseLeaseID(val)
		if err != nil {
			return clientv3.Cmp{}, err
		}
		v = int64(id)
	default:
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil || n < 0 {
			return clientv3.Cmp{}, fmt.Errorf("bad %s value %q: want a non-negative integer", name, val)
		}
		v = n
	}
	cmp := clientv3.Compare(mk(key), op, v)
	if end != nil {
		cmp = cmp.WithRange(*end)
	}
	return cmp, nil
}

// cmpToken is one token of a compare line.
type cmpToken struct {
	kind byte // 'w' bare word, 's' quoted string, 'p' punctuation or operator
	text string
}

// lexCompare splits a compare line into words, strings and punctuation.
func lexCompare(s string) ([]cmpToken, error) {
	var toks []cmpToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(' || c == ')' || c == ',' || c == '<' || c == '>':
			op := string(c)
			if (c == '<' || c == '>') && i+1 < len(s) && s[i+1] == '=' {
				return nil, fmt.Errorf("operator %q is not supported: want =, !=, < or >", s[i:i+2])
			}
			toks = append(toks, cmpToken{'p', op})
			i++
		case c == '=':
			if i+1 < len(s) && s[i+1] == '=' {
				i++
			}
			toks = append(toks, cmpToken{'p', "="})
			i++
		case c == '!':
			if i+1 >= len(s) || s[i+1] != '=' {
				return nil, errors.New(`"!" must be followed by "=" (the not-equal operator is !=)`)
			}
			toks = append(toks, cmpToken{'p', "!="})
			i += 2
		case c == '"' || c == '\'' || c == '`':
			str, n, err := quoted(s[i:])
			if err != nil {
				return nil, err
			}
			toks = append(toks, cmpToken{'s', str})
			i += n
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t()<>,=!\"'`", rune(s[j])) {
				j++
			}
			toks = append(toks, cmpToken{'w', s[i:j]})
			i = j
		}
	}
	return toks, nil
}

// quoted reads the quoted string at the start of s: a Go "interpreted" or
// `raw` string, or a 'single-quoted' literal without escapes. It returns the
// string and the number of bytes it took.
func quoted(s string) (string, int, error) {
	q := s[0]
	for j := 1; j < len(s); j++ {
		switch {
		case q == '"' && s[j] == '\\':
			j++
		case s[j] == q:
			if q == '\'' {
				return s[1:j], j + 1, nil
			}
			v, err := strconv.Unquote(s[:j+1])
			if err != nil {
				return "", 0, fmt.Errorf("bad quoted string %s: %v (Go escapes such as \\n, \\t, \\x00 and \\\" are allowed)", s[:j+1], err)
			}
			return v, j + 1, nil
		}
	}
	return "", 0, fmt.Errorf("unterminated %c quote", q)
}

// cmpParser walks the tokens of a compare line.
type cmpParser struct {
	toks []cmpToken
	i    int
}

func (p *cmpParser) word() (string, bool) {
	if p.i < len(p.toks) && p.toks[p.i].kind == 'w' {
		p.i++
		return p.toks[p.i-1].text, true
	}
	return "", false
}

func (p *cmpParser) str() (string, bool) {
	if p.i < len(p.toks) && p.toks[p.i].kind != 'p' {
		p.i++
		return p.toks[p.i-1].text, true
	}
	return "", false
}

func (p *cmpParser) punct(s string) bool {
	if p.i < len(p.toks) && p.toks[p.i].kind == 'p' && p.toks[p.i].text == s {
		p.i++
		return true
	}
	return false
}

func (p *cmpParser) operator() (string, bool) {
	for _, op := range []string{"=", "!=", "<", ">"} {
		if p.punct(op) {
			return op, true
		}
	}
	return "", false
}

func (p *cmpParser) done() bool { return p.i == len(p.toks) }

// parseTxnOp parses one request line: put, get or del followed by the flags
// and arguments of the command of the same name.
func parseTxnOp(line string) (clientv3.Op, error) {
	words, err := splitWords(line)
	if err != nil {
		return clientv3.Op{}, fmt.Errorf("bad request %q: %w", line, err)
	}
	if len(words) == 0 {
		return clientv3.Op{}, errors.New("empty request")
	}
	verb := strings.ToLower(words[0])
	fs := pflag.NewFlagSet(verb, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	parse := func(lo, hi int, expected string) ([]string, error) {
		if err := fs.Parse(words[1:]); err != nil {
			return nil, fmt.Errorf("%s: %v", verb, err)
		}
		args := fs.Args()
		if len(args) < lo || len(args) > hi {
			return nil, fmt.Errorf("%s expects %s, got %d argument(s) in %q", verb, expected, len(args), line)
		}
		return args, nil
	}
	var op clientv3.Op
	switch verb {
	case "put":
		var o putOptions
		bindPutFlags(fs, &o)
		args, err := parse(1, 2, "<key> <value>")
		if err != nil {
			return clientv3.Op{}, err
		}
		op, err = o.op(args[0], optionalArg(args, 1))
		if err != nil {
			return clientv3.Op{}, fmt.Errorf("put: %w", err)
		}
	case "get":
		var o getOptions
		bindGetFlags(fs, &o)
		args, err := parse(1, 2, "<key> [range_end]")
		if err != nil {
			return clientv3.Op{}, err
		}
		op, err = o.op(args[0], optionalArg(args, 1))
		if err != nil {
			return clientv3.Op{}, fmt.Errorf("get: %w", err)
		}
	case "del", "delete":
		var o delOptions
		bindDelFlags(fs, &o)
		args, err := parse(1, 2, "<key> [range_end]")
		if err != nil {
			return clientv3.Op{}, err
		}
		op, err = o.op(args[0], optionalArg(args, 1))
		if err != nil {
			return clientv3.Op{}, fmt.Errorf("del: %w", err)
		}
	default:
		if _, ok := compareTargets[verb]; ok || strings.ContainsRune(line, '(') {
			return clientv3.Op{}, fmt.Errorf("%q looks like a compare, but the compares section has ended (compares must come first, before the first blank line)", line)
		}
		return clientv3.Op{}, fmt.Errorf("unknown request %q: want put, get or del", words[0])
	}
	return op, nil
}

// splitWords splits a request line into words the way a shell would for the
// simple cases: blanks separate words, "double quotes" hold a Go-quoted
// string (with \n, \x00, \" escapes), 'single quotes' a literal, and quoted
// and bare parts next to each other join into one word.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
			i++
		case c == '"' || c == '\'':
			str, n, err := quoted(s[i:])
			if err != nil {
				return nil, err
			}
			cur.WriteString(str)
			inWord = true
			i += n
		default:
			cur.WriteByte(c)
			inWord = true
			i++
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
