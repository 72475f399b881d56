package explore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	revsync "github.com/revoked-dev/revoked/sync"
)

// exec runs one operation against the world and updates the model.
func (w *world) exec(op Op) {
	w.stats.count("op:" + op.K.String())
	now := time.Now()
	switch op.K {
	case OpMint:
		w.mint(op)
	case OpPubJTI:
		if len(w.tokens) == 0 {
			return
		}
		tok := w.tokens[op.arg(0)%len(w.tokens)]
		e := w.jtiEvent(tok, op.arg(1), op.arg(2), op.arg(3), now)
		w.publish(e)
	case OpPubCutoff:
		if len(w.tokens) == 0 {
			return
		}
		tok := w.tokens[op.arg(1)%len(w.tokens)]
		e := w.cutoffEvent(tok, op.arg(0), op.arg(2), op.arg(3), op.arg(4), op.arg(5), now)
		w.publish(e)
	case OpPubDup:
		if len(w.events) == 0 {
			return
		}
		w.publish(w.events[op.arg(0)%len(w.events)])
	case OpPubBad:
		w.publish(w.badEvent(op.arg(0)))
	case OpNATSStop:
		if w.natsUp {
			w.stopNATS()
			w.lastDisruption = time.Now()
		}
	case OpNATSStart:
		w.natsStart()
	case OpReplicaRestart:
		r := w.reps[op.arg(0)%len(w.reps)]
		r.restart(op.arg(1) == 1)
	case OpPartition:
		r := w.reps[op.arg(0)%len(w.reps)]
		if !r.partitioned {
			r.proxy.Partition()
			r.partitioned = true
		}
	case OpHeal:
		w.heal(w.reps[op.arg(0)%len(w.reps)])
	case OpStreamRecreate:
		if !w.natsUp || w.streamGone {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := w.js.DeleteStream(ctx, "REVOCATIONS"); err != nil {
			w.stats.count("recreate-delete-failed")
		}
		w.forgetStream()
		time.Sleep(time.Duration(op.arg(0)) * time.Millisecond)
		if err := w.ensureStream(); err != nil {
			w.stats.count("recreate-create-failed")
		}
		w.lastDisruption = time.Now()
	case OpStreamDelete:
		if !w.natsUp || w.streamGone {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := w.js.DeleteStream(ctx, "REVOCATIONS"); err != nil {
			w.stats.count("stream-delete-failed")
			return
		}
		w.forgetStream()
		w.streamGone = true
		w.lastDisruption = time.Now()
	case OpStreamCreate:
		w.streamCreate()
	case OpDeleteMsg:
		w.deleteMsg(op.arg(0), op.arg(1))
	case OpPurgeSubject:
		w.purge(op.arg(0))
	case OpSnapshot:
		w.snapshot(op.arg(0))
	case OpKeyAdd:
		alg := "EdDSA"
		if op.arg(0) == 1 {
			alg = "ES256"
		}
		if err := w.addKey(alg); err != nil {
			w.fail("harness", -1, nil, "add key: "+err.Error())
		}
	case OpKeyRemove:
		var pub []*sigKey
		for _, k := range w.keys {
			if k.published {
				pub = append(pub, k)
			}
		}
		if len(pub) < 2 {
			return // a JWKS file without keys is refused: the old keys stay (by design)
		}
		pub[op.arg(0)%len(pub)].published = false
		if err := w.publishJWKS(); err != nil {
			w.fail("harness", -1, nil, "jwks: "+err.Error())
		}
	case OpJWKSOutage:
		on := op.arg(0) == 1
		if on && !w.outage.Load() {
			w.outage.Store(true)
			w.outageStart = time.Now()
		} else if !on && w.outage.Load() {
			w.outage.Store(false)
			w.outageEnd = time.Now()
			w.lastDisruption = time.Now()
		}
	case OpSleep:
		w.sleepChecking(time.Duration(op.arg(0)) * time.Millisecond)
	case OpClock:
		r := w.reps[op.arg(0)%len(w.reps)]
		skew := min(time.Duration(r.skew.Load())+time.Duration(op.arg(1))*time.Millisecond, maxSkew)
		r.skew.Store(int64(skew))
	}
}

func (w *world) natsStart() {
	if w.natsUp {
		return
	}
	if err := w.startNATS(); err != nil {
		w.fail("harness", -1, nil, "nats start: "+err.Error())
		return
	}
	w.lastDisruption = time.Now()
}

// streamCreate creates the stream deleted by OpStreamDelete.
func (w *world) streamCreate() {
	if !w.natsUp || !w.streamGone {
		return
	}
	if err := w.ensureStream(); err != nil {
		w.stats.count("stream-create-failed")
		return
	}
	w.streamGone = false
	w.lastDisruption = time.Now()
}

func (w *world) heal(r *replica) {
	if r.partitioned {
		r.proxy.Heal()
		r.partitioned = false
		r.partEnd = time.Now()
	}
}

// healAll ends every fault, for the final liveness phase.
func (w *world) healAll() {
	w.natsStart()
	w.streamCreate()
	for _, r := range w.reps {
		w.heal(r)
		if r.startErr != nil {
			r.restart(r.snapshot)
		}
	}
	if w.outage.Load() {
		w.exec(Op{K: OpJWKSOutage, Args: []int{0}})
	}
}

func (w *world) mint(op Op) {
	k := w.keys[op.arg(0)%len(w.keys)]
	n := len(w.tokens)
	now := time.Now().Unix()
	life := []int64{2, 3, 5, 6}[op.arg(5)%4] // seconds, up to the lifetime
	tok := &token{
		n: n, key: k, shape: op.arg(4) % numShapes, mintedAt: time.Now(),
		sub:    fmt.Sprintf("user-%d", op.arg(1)%4),
		sid:    fmt.Sprintf("sid-%d", op.arg(2)%6),
		client: fmt.Sprintf("app-%d", op.arg(3)%3),
		jti:    fmt.Sprintf("tok-%d", n),
	}
	switch tok.shape {
	case shapeNormal:
		tok.iat, tok.exp = now, now+life
	case shapeWindow:
		tok.iat, tok.exp = now, now+int64(lifetime/time.Second)
	case shapeLongLived:
		// Issued long ago, expiring past the window: exp - iat exceeds the lifetime.
		tok.iat = now - 6 - 3*life
		tok.exp = now + int64(lifetime/time.Second) + life
	case shapeNoIAT:
		tok.exp = now + life
	case shapeFutureIAT:
		tok.iat = now + 3
		tok.exp = tok.iat + life
	}
	c := jwt.MapClaims{
		"iss": issuer, "aud": audience, "sub": tok.sub, "sid": tok.sid,
		"client_id": tok.client, "jti": tok.jti, "exp": tok.exp,
	}
	if tok.shape != shapeNoIAT {
		c["iat"] = tok.iat
	}
	tok.raw = k.iss.Sign(c)
	w.tokens = append(w.tokens, tok)
}

// jtiEvent: variant 0 the token's exp, 1 a far-future exp (a replica may refuse it:
// "maybe"), 2 a jti no token has. issV: 0 no iss, 1 the issuer, 2 another issuer.
// enc: 0 compact JSON, 1 with audit and unknown fields, 2 with escapes (the decoder's
// slow path).
func (w *world) jtiEvent(tok *token, variant, issV, enc int, now time.Time) *evRec {
	jti, exp := tok.jti, tok.exp
	maybe := false
	switch variant % 3 {
	case 1:
		exp, maybe = maxUnix, true
	case 2:
		jti = fmt.Sprintf("ghost-%d", len(w.events))
	}
	iss := issValue(issV)
	f := map[string]any{"type": "jti", "jti": jti, "exp": exp}
	if iss != "" {
		f["iss"] = iss
	}
	var raw []byte
	switch enc % 3 {
	case 1:
		f["reason"], f["revoked_at"], f["revoked_by"], f["sub"], f["x_unknown"] = "logout", now.Unix(), "explore", tok.sub, map[string]any{"nested": []int{1, 2}}
	case 2:
		// Escapes and whitespace: the same event, read by encoding/json.
		escaped := strings.ReplaceAll(jti, "-", `\u002d`)
		raw = fmt.Appendf(nil, "{ \"type\" : \"jti\",\n \"jti\": \"%s\", \"exp\": %d", escaped, exp)
		if iss != "" {
			raw = fmt.Appendf(raw, ", \"iss\": \"%s\"", strings.ReplaceAll(iss, "/", `\/`))
		}
		raw = append(raw, " }"...)
	}
	e := w.newEvent(subject("jti"), f, raw)
	e.typ, e.jti, e.iss, e.exp, e.maybe = "jti", jti, iss, exp, maybe
	return e
}

// cutoffEvent: claim 0 sub, 1 sid, 2 client_id, of the target token (or, valueV 4, a
// value no token has). nbV: 0 now, 1 the token's iat + 1, 2 two seconds ago, 3 2106,
// 4 three seconds ahead (3 and 4 may be refused: "maybe"). scopeV: 0 and 1 every client,
// 2 the token's own client, 3 another client (CONTRACT section 2, client_id).
func (w *world) cutoffEvent(tok *token, claimIdx, nbV, issV, valueV, scopeV int, now time.Time) *evRec {
	claim := []string{"sub", "sid", "client_id"}[claimIdx%3]
	value := map[string]string{"sub": tok.sub, "sid": tok.sid, "client_id": tok.client}[claim]
	if valueV%5 == 4 {
		value = fmt.Sprintf("victim-%d", len(w.events))
	}
	nb := now.Unix()
	maybe := false
	switch nbV % 5 {
	case 1:
		if tok.iat != 0 {
			nb = tok.iat + 1
		}
	case 2:
		nb = now.Unix() - 2
	case 3:
		nb, maybe = maxUnix, true
	case 4:
		nb, maybe = now.Unix()+3, true
	}
	nbSure := nb
	if nb > now.Unix() {
		// Later than the stream can store the event: a replica may bound not_before
		// to the store time (sync.EffectiveNotBefore), so tokens issued from now on
		// are perhaps revoked, perhaps not; those issued before certainly are.
		nbSure = now.Unix()
	}
	iss := issValue(issV)
	f := map[string]any{"type": "cutoff", "claim": claim, "value": value, "not_before": nb}
	if iss != "" {
		f["iss"] = iss
	}
	client := ""
	switch scopeV % 4 {
	case 2:
		client = tok.client
	case 3:
		client = tok.client + "-other"
	}
	if client != "" {
		f["client_id"] = client
	}
	e := w.newEvent(subject("cutoff"), f, nil)
	e.typ, e.claim, e.value, e.iss, e.nb, e.nbSure, e.maybe = "cutoff", claim, value, iss, nb, nbSure, maybe
	e.client = client
	return e
}

func issValue(v int) string {
	switch v % 3 {
	case 1:
		return issuer
	case 2:
		return otherIssuer
	}
	return ""
}

// badEvent is an event every replica must count and skip.
func (w *world) badEvent(v int) *evRec {
	var raw []byte
	subj := subject("jti")
	switch v % 8 {
	case 0:
		raw = []byte("not json at all")
	case 1:
		raw = []byte(`{"type":"nope","jti":"tok-0","exp":4000000000}`)
	case 2:
		raw = fmt.Appendf(nil, `{"type":"jti","jti":"%s","exp":%d}`, strings.Repeat("j", 300), time.Now().Unix()+3)
	case 3:
		subj = subject("cutoff")
		raw = fmt.Appendf(nil, `{"type":"cutoff","claim":"email","value":"user-0","not_before":%d}`, time.Now().Unix())
	case 4:
		raw = fmt.Appendf(nil, `{"type":"jti","jti":"tok-0","exp":%d,"pad":"%s"}`, time.Now().Unix()+3, strings.Repeat("p", 5000))
	case 5:
		raw = []byte(`{"type":"jti","jti":"tok-0","exp":-5}`)
	case 6:
		raw = []byte("{\"type\":\"jti\",\"jti\":\"\xff\xfe\",\"exp\":4000000000}")
	case 7:
		subj = subject("cutoff")
		raw = []byte(`[{"type":"cutoff","claim":"sub","value":"user-0","not_before":4000000000}]`)
	}
	e := w.newEvent(subj, nil, raw)
	e.typ, e.maybe = "bad", true
	return e
}

// forgetStream marks every event of the current incarnation gone.
func (w *world) forgetStream() {
	for _, e := range w.events {
		if e.inc == w.inc {
			e.gone = true
		}
	}
	w.inc++
	w.bySeq = map[uint64]*evRec{}
}

func (w *world) stream() (jetstream.Stream, context.Context, context.CancelFunc) {
	if !w.natsUp {
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	st, err := w.js.Stream(ctx, "REVOCATIONS")
	if err != nil {
		cancel()
		return nil, nil, nil
	}
	return st, ctx, cancel
}

// deleteMsg: variant 0 the stream's last message (the last sequence is then ahead of
// the last message), else the message of an event.
func (w *world) deleteMsg(variant, evIdx int) {
	st, ctx, cancel := w.stream()
	if st == nil {
		return
	}
	defer cancel()
	var seq uint64
	if variant%3 == 0 {
		info, err := st.Info(ctx)
		if err != nil || info.State.Msgs == 0 {
			return
		}
		seq = info.State.LastSeq
	} else {
		if len(w.events) == 0 {
			return
		}
		e := w.events[evIdx%len(w.events)]
		if !e.acked || e.gone || e.inc != w.inc {
			return
		}
		seq = e.seq
	}
	if err := st.DeleteMsg(ctx, seq); err != nil {
		return
	}
	if e := w.bySeq[seq]; e != nil {
		e.gone = true
	}
	w.lastDisruption = time.Now()
}

// purge: 0 the jti subject, 1 the cutoff subject, 2 everything.
func (w *world) purge(v int) {
	st, ctx, cancel := w.stream()
	if st == nil {
		return
	}
	defer cancel()
	var opts []jetstream.StreamPurgeOpt
	subj := ""
	switch v % 3 {
	case 0:
		subj = subject("jti")
	case 1:
		subj = subject("cutoff")
	}
	if subj != "" {
		opts = append(opts, jetstream.WithPurgeSubject(subj))
	}
	if err := st.Purge(ctx, opts...); err != nil {
		return
	}
	for seq, e := range w.bySeq {
		if subj == "" || e.subject == subj {
			e.gone = true
			delete(w.bySeq, seq)
		}
	}
	w.lastDisruption = time.Now()
}

// snapshot builds and writes one: variants 0-1 with the replicas' settings, 2 a
// shorter lifetime, 3 fewer cutoff claims, 4 no leeway (a snapshot job configured
// unlike the sidecars), 5 a forged empty snapshot at the stream's last sequence, signed
// with another key than the job's (what someone with write access to the bucket can
// do).
func (w *world) snapshot(v int) {
	if !w.natsUp {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := revsync.Options{MaxTokenLifetime: lifetime, Leeway: leeway}
	var snap *revsync.Snapshot
	switch v % 6 {
	case 2:
		opts.MaxTokenLifetime = time.Second
	case 3:
		opts.CutoffClaims = []string{"sub"}
	case 4:
		opts.Leeway = 0
	case 5:
		st, sctx, scancel := w.stream()
		if st == nil {
			return
		}
		info, err := st.Info(sctx)
		scancel()
		if err != nil {
			return
		}
		snap = forgedSnapshot(info)
	}
	if snap == nil {
		var err error
		if snap, err = revsync.BuildSnapshot(ctx, w.js, opts, time.Now()); err != nil {
			w.stats.count("snapshot-build-failed")
			return
		}
	}
	if err := w.writeSnapshot(ctx, snap, v%6 == 5); err != nil {
		w.stats.count("snapshot-write-failed")
		return
	}
	w.stats.count(fmt.Sprintf("snapshot-written-%d", v%6))
}
