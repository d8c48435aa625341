package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestDemoCommitsOnEveryMember(t *testing.T) {
	var out bytes.Buffer
	if err := runDemo(context.Background(), &out, 3, 3, 2*time.Millisecond); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	got := out.String()
	if n := strings.Count(got, "applied \"entry-"); n != 9 {
		t.Fatalf("want 3 entries applied on 3 members (9 lines), got %d:\n%s", n, got)
	}
	if !strings.Contains(got, "became leader") {
		t.Fatalf("no leader reported:\n%s", got)
	}
}
