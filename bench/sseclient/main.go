// Command sseclient holds many SSE subscriptions to one GuildNet changefeed over real
// HTTPS connections and measures delivery latency (bench/changefeeds.py drives it).
//
// Each connection reads `text/event-stream`; a `change` event's new row carries "id"
// (the writer's sequence number) and "ts" (its insert time, Unix seconds), so latency
// is receipt time minus ts. Protocol on stdio, one JSON object a line:
//
//	stdout {"connected": N, "failed": F, "errors": [...]}  every subscriber has had `ready`
//	stdin  {"expect": E, "timeout": S}                    the writer inserted E rows
//	stdout {...results...}                                 every subscriber has E, or S passed
//
// Go, not Python: one process holds 1,000 TLS connections at 200,000 events/s on a
// fraction of a core, so the client is never what is measured.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type sub struct {
	mu        sync.Mutex
	lat       []float32 // ms
	seen      []bool
	distinct  int
	dups      int
	resyncs   int
	snapshots int
	other     int
	closedErr string
}

func (s *sub) record(id int, ms float32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id >= len(s.seen) {
		s.seen = append(s.seen, make([]bool, len(s.seen)+1024)...)
	}
	if id < 0 {
		s.dups++
		return
	}
	if s.seen[id] {
		s.dups++
		return
	}
	s.seen[id] = true
	s.distinct++
	s.lat = append(s.lat, ms)
}

func number(data []byte, key string) (float64, bool) {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0, false
	}
	j := i + len(key)
	k := j
	for k < len(data) && (data[k] == '-' || data[k] == '.' || data[k] == 'e' || data[k] == 'E' || data[k] == '+' || (data[k] >= '0' && data[k] <= '9')) {
		k++
	}
	v, err := strconv.ParseFloat(string(data[j:k]), 64)
	return v, err == nil
}

func run(client *http.Client, url string, s *sub, ready chan<- error) {
	signalled := false
	fail := func(err error) {
		if !signalled {
			signalled = true
			ready <- err
		}
	}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		fail(err)
		return
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		fail(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		fail(fmt.Errorf("status %d", resp.StatusCode))
		return
	}
	body := bufio.NewReaderSize(resp.Body, 64*1024)
	event := ""
	for {
		line, err := body.ReadSlice('\n')
		for err == bufio.ErrBufferFull {
			// A line longer than the buffer: a snapshot's data (all rows on one line).
			// Only its start matters here; skip the rest.
			line = append([]byte(nil), line[:64]...)
			_, err = body.ReadSlice('\n')
			if err == nil {
				line = append(line, '\n')
			}
		}
		if err != nil {
			s.mu.Lock()
			s.closedErr = err.Error()
			s.mu.Unlock()
			fail(err)
			return
		}
		now := time.Now()
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			event = ""
		case bytes.HasPrefix(line, []byte("event: ")):
			event = string(line[7:])
			switch event {
			case "ready":
				if !signalled {
					signalled = true
					ready <- nil
				}
			case "resync":
				s.mu.Lock()
				s.resyncs++
				s.mu.Unlock()
			case "snapshot":
				s.mu.Lock()
				s.snapshots++
				s.mu.Unlock()
			case "change":
			default:
				s.mu.Lock()
				s.other++
				s.mu.Unlock()
			}
		case bytes.HasPrefix(line, []byte("data: ")) && event == "change":
			ts, ok1 := number(line, `"ts":`)
			id, ok2 := number(line, `"id":`)
			if !ok1 || !ok2 {
				s.record(-1, 0)
				continue
			}
			ms := float32(float64(now.UnixNano())/1e6 - ts*1e3)
			s.record(int(id), ms)
		}
	}
}

func pct(sorted []float32, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)-1) + 0.5)
	return float64(sorted[i])
}

func main() {
	url := flag.String("url", "https://127.0.0.1:8090/", "the SSE URL")
	n := flag.Int("n", 1000, "subscribers")
	parallel := flag.Int("connect-parallel", 50, "TLS handshakes at once")
	flag.Parse()
	client := &http.Client{Transport: &http.Transport{
		// The Host App's self-signed certificate; loopback only.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		// HTTP/1.1, one TCP+TLS connection per subscriber (no HTTP/2 multiplexing).
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		DialContext:         (&net.Dialer{Timeout: 60 * time.Second}).DialContext,
		TLSHandshakeTimeout: 60 * time.Second,
		DisableCompression:  true,
	}}
	subs := make([]*sub, *n)
	ready := make(chan error, *n)
	gate := make(chan struct{}, *parallel)
	var connected, failed atomic.Int64
	errs := []string{}
	for i := range subs {
		subs[i] = &sub{}
	}
	start := time.Now()
	go func() {
		for i := range subs {
			gate <- struct{}{}
			s := subs[i]
			one := make(chan error, 1)
			go run(client, *url, s, one)
			go func() { e := <-one; ready <- e; <-gate }()
		}
	}()
	for range subs {
		if err := <-ready; err != nil {
			failed.Add(1)
			if len(errs) < 5 {
				errs = append(errs, err.Error())
			}
		} else {
			connected.Add(1)
		}
	}
	out := json.NewEncoder(os.Stdout)
	out.Encode(map[string]any{"connected": connected.Load(), "failed": failed.Load(), "errors": errs, "seconds": time.Since(start).Seconds()})

	var cmd struct {
		Expect  int     `json:"expect"`
		Timeout float64 `json:"timeout"`
	}
	if err := json.NewDecoder(bufio.NewReader(os.Stdin)).Decode(&cmd); err != nil {
		fmt.Fprintln(os.Stderr, "stdin:", err)
		os.Exit(2)
	}
	deadline := time.Now().Add(time.Duration(cmd.Timeout * float64(time.Second)))
	for time.Now().Before(deadline) {
		all := true
		for _, s := range subs {
			s.mu.Lock()
			d := s.distinct
			s.mu.Unlock()
			if d < cmd.Expect {
				all = false
				break
			}
		}
		if all {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var lat []float32
	minGot, maxGot := -1, 0
	dups, resyncs, snapshots, other, complete := 0, 0, 0, 0, 0
	closed := []string{}
	for _, s := range subs {
		s.mu.Lock()
		lat = append(lat, s.lat...)
		if minGot < 0 || s.distinct < minGot {
			minGot = s.distinct
		}
		if s.distinct > maxGot {
			maxGot = s.distinct
		}
		if s.distinct >= cmd.Expect {
			complete++
		}
		dups += s.dups
		resyncs += s.resyncs
		snapshots += s.snapshots
		other += s.other
		if s.closedErr != "" && len(closed) < 5 {
			closed = append(closed, s.closedErr)
		}
		s.mu.Unlock()
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	out.Encode(map[string]any{
		"subscribers": len(subs), "expected_each": cmd.Expect,
		"delivered": len(lat), "expected": cmd.Expect * int(connected.Load()),
		"complete_subscribers": complete, "min_each": minGot, "max_each": maxGot,
		"duplicates": dups, "resyncs": resyncs, "snapshots": snapshots, "other_events": other, "closed": closed,
		"p50_ms": pct(lat, 0.50), "p90_ms": pct(lat, 0.90), "p99_ms": pct(lat, 0.99),
		"max_ms": pct(lat, 1.0),
	})
}
