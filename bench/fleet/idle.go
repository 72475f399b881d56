package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/bench/benchkit"
	"github.com/revoked-dev/revoked/event"
)

// idleAndPropagation watches nats-server while the ready fleet only follows the stream
// (its RSS above baseRSS, read before the fleet started, and its CPU), then times
// o.events revocations from publish until every replica has applied them.
func idleAndPropagation(ctx context.Context, env *benchkit.Env, f *fleetOf, o opts, baseRSS int64) error {
	n := len(f.rs)
	ns := env.NATS.Cmd.Process.Pid
	time.Sleep(2 * time.Second) // the restart's own traffic drains
	// JetStream API requests the idle fleet makes (stream and consumer info from the
	// supervisors), from the account's counter; the two reads add one each.
	api0, err := env.JS.AccountInfo(ctx)
	if err != nil {
		return err
	}
	cpu0 := benchkit.CPUTime(ns)
	time.Sleep(o.idle)
	cpu := benchkit.CPUTime(ns) - cpu0
	api1, err := env.JS.AccountInfo(ctx)
	if err != nil {
		return err
	}
	apiReqs := float64(api1.API.Total-api0.API.Total-1) / o.idle.Seconds() / float64(n)
	rss := benchkit.RSS(ns)
	fmt.Printf("FIGURE fleet-idle n=%d nats_rss=%.1fMiB nats_rss_per_replica=%.1fKiB nats_cpu_per_replica=%.2fms/s js_api_per_replica=%.2f/s\n",
		n, float64(rss)/(1<<20), float64(rss-baseRSS)/float64(n)/1024, cpu.Seconds()*1000/o.idle.Seconds()/float64(n), apiReqs)

	info, err := env.JS.Stream(ctx, event.DefaultStream)
	if err != nil {
		return err
	}
	next := info.CachedInfo().State.LastSeq + 1
	subject := event.Subject(event.DefaultSubjectPrefix, event.TypeJTI)
	exp := time.Now().Add(2 * time.Hour).Unix()
	var all, first []time.Duration
	for range o.events {
		msg := &nats.Msg{Subject: subject, Data: benchkit.JTIEvent(env.Issuer.Iss, benchkit.RandomID(), exp), Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, benchkit.RandomID())
		acked := make(chan error, 1)
		t0 := time.Now()
		go func() {
			_, err := env.JS.PublishMsg(ctx, msg)
			acked <- err
		}()
		// Scan every replica's last applied sequence until all have it.
		applied := make([]bool, n)
		left, firstAt := n, time.Duration(0)
		deadline := t0.Add(10 * time.Second)
		for left > 0 {
			for i, r := range f.rs {
				if !applied[i] && r.r.LastSequence() >= next {
					applied[i] = true
					left--
					if firstAt == 0 {
						firstAt = time.Since(t0)
					}
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d replicas did not apply sequence %d within 10s", left, n, next)
			}
			time.Sleep(50 * time.Microsecond)
		}
		all = append(all, time.Since(t0))
		first = append(first, firstAt)
		if err := <-acked; err != nil {
			return err
		}
		next++
		time.Sleep(o.gap)
	}
	a, fs := benchkit.Percentiles(all), benchkit.Percentiles(first)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	fmt.Printf("FIGURE fleet-propagation n=%d events=%d all_p50=%.2fms all_p99=%.2fms all_max=%.2fms first_p50=%.2fms first_p99=%.2fms\n",
		n, len(all), ms(a.P50), ms(a.P99), ms(a.Max), ms(fs.P50), ms(fs.P99))
	return nil
}
