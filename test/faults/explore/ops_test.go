package explore

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Kind is an operation of the explorer. An operation's arguments are small integers
// that name things by index (a token, a replica, a key, an event); execution resolves
// them modulo what exists at that point, and an operation that names nothing usable
// does nothing. So any sublist of a generated list is itself a valid list, which is
// what shrinking needs.
type Kind int

const (
	OpMint           Kind = iota // mint a token: key, sub, sid, client, shape, lifetime
	OpPubJTI                     // revoke a token by jti: token, variant, iss variant, encoding
	OpPubCutoff                  // revoke by cutoff: claim, target token, nb variant, iss variant, value variant, client scope
	OpPubDup                     // publish an earlier event again, same Nats-Msg-Id
	OpPubBad                     // publish a malformed or invalid event: variant
	OpNATSStop                   // shut the NATS server down (store kept)
	OpNATSStart                  // start it again on the same port and store
	OpReplicaRestart             // cancel a replica's Run, start a new Set/Replica/Authorizer: replica, snapshot?
	OpPartition                  // cut a replica's connection (proxy): replica
	OpHeal                       // heal a replica's connection: replica
	OpStreamRecreate             // delete the stream and create it again: delay ms
	OpDeleteMsg                  // delete one message: event, or (variant 0) the stream's last message
	OpPurgeSubject               // purge the stream: 0 jti subject, 1 cutoff subject, 2 all
	OpSnapshot                   // build and write a snapshot: variant (matching, mismatching, forged)
	OpKeyAdd                     // add a signing key to the JWKS: alg
	OpKeyRemove                  // remove a signing key from the JWKS: key
	OpJWKSOutage                 // the JWKS URL answers 503: on (1) / off (0)
	OpSleep                      // time passes: ms
	OpClock                      // a replica's clock jumps forward (revsync.Options.Now, authz Decide's now): replica, ms
	OpStreamDelete               // delete the stream (publishes fail, replicas find it gone) until OpStreamCreate
	OpStreamCreate               // create it again
	numKinds
)

var kindNames = [...]string{
	OpMint: "mint", OpPubJTI: "pubjti", OpPubCutoff: "pubcutoff", OpPubDup: "pubdup",
	OpPubBad: "pubbad", OpNATSStop: "natsstop", OpNATSStart: "natsstart",
	OpReplicaRestart: "restart", OpPartition: "partition", OpHeal: "heal",
	OpStreamRecreate: "recreate", OpDeleteMsg: "rmm", OpPurgeSubject: "purge",
	OpSnapshot: "snapshot", OpKeyAdd: "keyadd", OpKeyRemove: "keyrm",
	OpJWKSOutage: "jwksoutage", OpSleep: "sleep", OpClock: "clock",
	OpStreamDelete: "streamdel", OpStreamCreate: "streamcreate",
}

func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return "op" + strconv.Itoa(int(k))
}

// Op is one operation.
type Op struct {
	K    Kind
	Args []int
}

func (o Op) arg(i int) int {
	if i < len(o.Args) {
		return o.Args[i]
	}
	return 0
}

func (o Op) String() string {
	s := make([]string, len(o.Args))
	for i, a := range o.Args {
		s[i] = strconv.Itoa(a)
	}
	return o.K.String() + "(" + strings.Join(s, ",") + ")"
}

// FormatOps writes a list the way ParseOps reads it (EXPLORE_OPS).
func FormatOps(ops []Op) string {
	s := make([]string, len(ops))
	for i, o := range ops {
		s[i] = o.String()
	}
	return strings.Join(s, " ")
}

// ParseOps reads "mint(0,1,2) sleep(500) ...".
func ParseOps(s string) ([]Op, error) {
	var ops []Op
	for _, f := range strings.Fields(s) {
		name, rest, ok := strings.Cut(f, "(")
		if !ok || !strings.HasSuffix(rest, ")") {
			return nil, fmt.Errorf("op %q: want name(args)", f)
		}
		k := Kind(-1)
		for i, n := range kindNames {
			if n == name {
				k = Kind(i)
			}
		}
		if k < 0 {
			return nil, fmt.Errorf("op %q: unknown name", f)
		}
		op := Op{K: k}
		if args := strings.TrimSuffix(rest, ")"); args != "" {
			for _, a := range strings.Split(args, ",") {
				n, err := strconv.Atoi(a)
				if err != nil {
					return nil, fmt.Errorf("op %q: %w", f, err)
				}
				op.Args = append(op.Args, n)
			}
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// Generate returns n operations drawn from seed: a pure function of (seed, n), so a
// replay names both (EXPLORE_SEED, EXPLORE_STEPS).
//
// The generator keeps a rough idea of the state (NATS up, partitions, outage) so that
// faults are mostly healed a few operations later, as Jepsen's nemesis schedules do,
// and the run spends most of its time in states where the promise must hold.
func Generate(seed uint64, n int) []Op {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var ops []Op
	natsDown, streamGone := false, false
	parted := map[int]bool{}
	outage := false
	minted := 0
	add := func(k Kind, args ...int) { ops = append(ops, Op{K: k, Args: args}) }
	// A few tokens first, so that the first revocations have something to hit.
	for i := 0; i < 4; i++ {
		add(OpMint, r.IntN(8), r.IntN(4), r.IntN(6), r.IntN(3), mintShape(r), r.IntN(4))
		minted++
	}
	type w struct {
		k Kind
		w int
	}
	weights := []w{
		{OpMint, 14}, {OpPubJTI, 14}, {OpPubCutoff, 12}, {OpPubDup, 4}, {OpPubBad, 4},
		{OpNATSStop, 2}, {OpReplicaRestart, 6}, {OpPartition, 3},
		{OpStreamRecreate, 2}, {OpDeleteMsg, 3}, {OpPurgeSubject, 1}, {OpSnapshot, 4},
		{OpKeyAdd, 2}, {OpKeyRemove, 2}, {OpJWKSOutage, 2}, {OpSleep, 14}, {OpClock, 2}, {OpStreamDelete, 1},
	}
	total := 0
	for _, x := range weights {
		total += x.w
	}
	for len(ops) < n {
		// Heal what is broken with some probability each step.
		if natsDown && r.IntN(3) == 0 {
			add(OpNATSStart)
			natsDown = false
			continue
		}
		for rep := range parted {
			if r.IntN(4) == 0 {
				add(OpHeal, rep)
				delete(parted, rep)
			}
		}
		if streamGone && r.IntN(3) == 0 {
			add(OpStreamCreate)
			streamGone = false
			continue
		}
		if outage && r.IntN(4) == 0 {
			add(OpJWKSOutage, 0)
			outage = false
			continue
		}
		x := r.IntN(total)
		var k Kind
		for _, c := range weights {
			if x < c.w {
				k = c.k
				break
			}
			x -= c.w
		}
		switch k {
		case OpMint:
			add(k, r.IntN(8), r.IntN(4), r.IntN(6), r.IntN(3), mintShape(r), r.IntN(4))
			minted++
		case OpPubJTI:
			v := 0 // the token's own exp
			switch r.IntN(10) {
			case 0:
				v = 1 // far future exp
			case 1:
				v = 2 // a jti no token has
			}
			add(k, r.IntN(64), v, r.IntN(3), r.IntN(3))
		case OpPubCutoff:
			nb := 0 // now
			switch x := r.IntN(20); {
			case x < 6:
				nb = 1 // the token's iat + 1
			case x < 8:
				nb = 2 // a little in the past
			case x == 8:
				nb = 3 // far future (2106)
			case x == 9:
				nb = 4 // a few seconds ahead
			}
			add(k, r.IntN(3), r.IntN(64), nb, r.IntN(3), r.IntN(5), r.IntN(4))
		case OpPubDup:
			add(k, r.IntN(64))
		case OpPubBad:
			add(k, r.IntN(8))
		case OpNATSStop:
			if !natsDown {
				add(k)
				natsDown = true
			}
		case OpReplicaRestart:
			add(k, r.IntN(3), r.IntN(2))
		case OpPartition:
			rep := r.IntN(3)
			if !parted[rep] {
				add(k, rep)
				parted[rep] = true
			}
		case OpStreamRecreate:
			add(k, r.IntN(3)*400)
		case OpDeleteMsg:
			add(k, r.IntN(3), r.IntN(64))
		case OpPurgeSubject:
			add(k, r.IntN(3))
		case OpSnapshot:
			add(k, r.IntN(6))
		case OpKeyAdd:
			add(k, r.IntN(2))
		case OpKeyRemove:
			add(k, r.IntN(8))
		case OpJWKSOutage:
			if !outage {
				add(k, 1)
				outage = true
			}
		case OpClock:
			add(k, r.IntN(3), 200+r.IntN(1800))
		case OpStreamDelete:
			if !streamGone {
				add(k)
				streamGone = true
			}
		case OpSleep:
			ms := 100 + r.IntN(1500)
			if r.IntN(6) == 0 {
				ms = 2000 + r.IntN(4000)
			}
			add(k, ms)
		}
	}
	return ops[:n]
}

// Token shapes.
const (
	shapeNormal    = iota // iat now, lifetime within the window
	shapeWindow           // lifetime exactly the window
	shapeLongLived        // iat far back, exp - iat beyond the window (the contract refuses it)
	shapeNoIAT            // no iat claim
	shapeFutureIAT        // iat a few seconds ahead (not yet valid)
	numShapes
)

func mintShape(r *rand.Rand) int {
	switch x := r.IntN(20); {
	case x < 12:
		return shapeNormal
	case x < 14:
		return shapeWindow
	case x < 17:
		return shapeLongLived
	case x < 19:
		return shapeNoIAT
	default:
		return shapeFutureIAT
	}
}
