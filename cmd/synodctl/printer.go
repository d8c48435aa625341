package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// printer writes command results in the format chosen by --write-out:
//   - simple: etcdctl-like plain lines (a key, then its value, on their own
//     lines; "OK" after a put; counts after a delete).
//   - json: one line holding the encoding/json form of the response protobuf,
//     with the API's snake_case field names, numbers as numbers and bytes
//     (keys, values) in base64, the same way for every command.
//   - table: aligned columns, for the commands that list things (member list,
//     endpoint status, endpoint health).
type printer struct {
	w      io.Writer
	format string
	hex    bool
}

// json writes v as one line of JSON.
func (p *printer) json(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding JSON output: %w", err)
	}
	b = append(b, '\n')
	_, err = p.w.Write(b)
	return err
}

// linef writes one formatted line.
func (p *printer) linef(format string, args ...any) {
	fmt.Fprintf(p.w, format+"\n", args...)
}

// bytes renders a key or value for simple output: as is, or hex-escaped
// ("\x66\x6f\x6f") under --hex.
func (p *printer) bytes(b []byte) string {
	if !p.hex {
		return string(b)
	}
	return hexEscape(b)
}

// hexEscape writes every byte of b as \xNN.
func hexEscape(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 4*len(b))
	for _, c := range b {
		out = append(out, '\\', 'x', digits[c>>4], digits[c&0xf])
	}
	return string(out)
}

// kv prints a key-value pair: the key line then the value line, or only one
// of them.
func (p *printer) kv(kv *mvccpb.KeyValue, keysOnly, valueOnly bool) {
	if !valueOnly {
		p.linef("%s", p.bytes(kv.GetKey()))
	}
	if !keysOnly {
		p.linef("%s", p.bytes(kv.GetValue()))
	}
}

// table writes rows under header as aligned columns.
func (p *printer) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(p.w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// humanBytes renders a byte count in SI units ("512 B", "25 kB", "1.3 MB").
func humanBytes(n int64) string {
	if n < 1000 && n > -1000 {
		return strconv.FormatInt(n, 10) + " B"
	}
	units := []string{"kB", "MB", "GB", "TB", "PB", "EB"}
	v := float64(n) / 1000
	i := 0
	for (v >= 1000 || v <= -1000) && i < len(units)-1 {
		v /= 1000
		i++
	}
	if v < 10 && v > -10 {
		return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " " + units[i]
}

// memberIDString renders a member, cluster or lease ID as etcd prints them:
// lower-case hex without leading zeros.
func memberIDString(id uint64) string {
	return strconv.FormatUint(id, 16)
}
