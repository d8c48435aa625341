package main

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestCompareFlagsDefaults(t *testing.T) {
	c, err := parseCompareFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Systems, []string{"etcd", "synod"}) || c.Target != "leader" || c.Cluster.Size != 3 {
		t.Errorf("defaults: %+v", c)
	}
	if c.Cluster.HeartbeatInterval != 100 || c.Cluster.ElectionTimeout != 1000 || c.Cluster.SnapshotCount != 10000 {
		t.Errorf("cluster defaults: %+v", c.Cluster)
	}
	if !slices.Equal(c.PutTotal, fullPutTotal) || c.RangeTot != fullRangeTotal || c.RecKeys != fullRecoveryKeys {
		t.Errorf("full totals: %v %d %d", c.PutTotal, c.RangeTot, c.RecKeys)
	}
	ws := c.workloads()
	var names []string
	for _, w := range ws {
		names = append(names, w.Name)
	}
	want := []string{"put-c1", "put-c10", "put-c100", "put-c1000", "range-l-c1000", "range-s-c1000", "txn-mixed-c100", "lease-keepalive-c100", "watch-latency-leader", "watch-latency-follower"}
	if !slices.Equal(names, want) {
		t.Fatalf("workloads %v, want %v", names, want)
	}
	// The headline workload.
	h := ws[3]
	if h.Conns != 100 || h.Clients != 1000 || h.KeySize != 8 || h.ValSize != 256 || !h.SequentialKeys || h.KeySpaceSize != 100000 || h.Total != 100000 {
		t.Errorf("headline put: %+v", h)
	}
	if ws[4].Consistency != "l" || ws[5].Consistency != "s" || ws[4].Conns != 100 {
		t.Errorf("ranges: %+v %+v", ws[4], ws[5])
	}
	f := c.fillWorkload()
	if f.Total != 1000000 || f.KeySpaceSize != 1000000 || !f.SequentialKeys || f.validate() != nil {
		t.Errorf("fill: %+v (%v)", f, f.validate())
	}
}

func TestCompareFlagsQuickAndOverrides(t *testing.T) {
	c, err := parseCompareFlags([]string{"-quick", "-range-total", "77", "--systems=synod", "-workloads", "put,recovery"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.PutTotal, quickPutTotal) || c.RangeTot != 77 || c.RecKeys != quickRecKeys || c.TxnTotal != quickTxnTotal {
		t.Errorf("quick: %v %d %d %d", c.PutTotal, c.RangeTot, c.RecKeys, c.TxnTotal)
	}
	if !slices.Equal(c.Systems, []string{"synod"}) {
		t.Errorf("systems %v", c.Systems)
	}
	for _, w := range c.workloads() {
		if w.Kind != kindPut {
			t.Errorf("workload %s not selected", w.Name)
		}
	}
	c, err = parseCompareFlags([]string{"-put-clients", "2,4", "-put-conns", "1,2", "-put-total", "10,20"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if ws := c.workloads(); ws[1].Name != "put-c4" || ws[1].Conns != 2 || ws[1].Total != 20 {
		t.Errorf("custom put list: %+v", ws[1])
	}
}

func TestCompareFlagsErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-systems", "consul"},
		{"-workloads", "put,bogus"},
		{"-put-clients", "1,10", "-put-conns", "1"},
		{"-put-clients", "0"},
		{"-put-clients", "x"},
		{"-target", "nowhere"},
		{"-recovery-victim", "anyone"},
		{"-election-timeout", "300"},
		{"-put-clients", "5", "-put-conns", "10", "-put-total", "100"}, // more conns than clients
		{"-key-size", "3"},                                             // too small for 100000 keys
		{"stray"},
	} {
		if _, err := parseCompareFlags(args, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if _, err := parseCompareFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestLoadFlags(t *testing.T) {
	w, eps, err := parseLoadFlags(kindPut, strings.Fields("--endpoints=a:1,b:2 --conns=100 --clients=1000 --key-size=8 --val-size=256 --sequential-keys --key-space-size=100000 --total=5"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(eps, []string{"a:1", "b:2"}) || w.Conns != 100 || w.Clients != 1000 || w.ValSize != 256 || !w.SequentialKeys || w.KeySpaceSize != 100000 || w.Total != 5 {
		t.Errorf("put: %+v %v", w, eps)
	}
	w, _, err = parseLoadFlags(kindRange, strings.Fields("--consistency=s --clients=4 --conns=2 foo"), io.Discard)
	if err != nil || w.RangeKey != "foo" || w.Consistency != "s" {
		t.Errorf("range: %+v %v", w, err)
	}
	w, _, err = parseLoadFlags(kindTxnMixed, strings.Fields("--rw-ratio=4 --key-space-size=100"), io.Discard)
	if err != nil || w.RWRatio != 4 || w.Consistency != "l" {
		t.Errorf("txn-mixed: %+v %v", w, err)
	}
	for kind, args := range map[string]string{
		kindRange + "1":    "",
		kindRange + "2":    "--consistency=x foo",
		kindPut + "1":      "--key-space-size=1000 --key-size=2",
		kindPut + "2":      "--conns=0",
		kindPut + "3":      "extra",
		kindTxnMixed + "1": "--rw-ratio=-1",
		kindPut + "4":      "--endpoints=",
	} {
		if _, _, err := parseLoadFlags(strings.TrimRight(kind, "1234"), strings.Fields(args), io.Discard); err == nil {
			t.Errorf("%s %q: no error", kind, args)
		}
	}
}
