package jobs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
)

// errEndOfList ends an invite list.
var errEndOfList = errors.New("end of invite list")

// errListChanged: the object holding a running campaign's invites was
// replaced; the invites not yet published are not sent.
var errListChanged = errors.New("the invite list changed while the campaign ran")

// inviteList yields a campaign's invites in order.
type inviteList interface {
	// Next returns the next invite, or errEndOfList after the last.
	Next() (events.Invite, error)
	// Digest is the object's SHA-256 digest ("" for inline invites).
	Digest() string
	Close() error
}

// openList opens a campaign's invites, positioned at invite skip; skipped
// is called with each invite before it.
func (c *campaigns) openList(ctx context.Context, st *campaignState, skip int, skipped func(events.Invite)) (inviteList, error) {
	if st.Object == nil {
		e, _, err := c.w.ledger.Get(ctx, st.CommandID)
		if err != nil {
			return nil, fmt.Errorf("campaign: read the start command: %w", err)
		}
		var cmd events.Command
		var p events.StartInviteCampaignParams
		if err := json.Unmarshal(e.Command, &cmd); err != nil {
			return nil, fmt.Errorf("campaign: decode the start command: %w", err)
		}
		if err := cmd.DecodeParams(&p); err != nil {
			return nil, fmt.Errorf("campaign: decode the start command: %w", err)
		}
		skip = min(skip, len(p.Invites))
		for _, inv := range p.Invites[:skip] {
			skipped(inv)
		}
		return &sliceList{invites: p.Invites[skip:]}, nil
	}
	l, err := c.openObject(ctx, st)
	if err != nil {
		return nil, err
	}
	// l is only read: closing it has nothing to report that the errors
	// returned below do not.
	if st.ObjectDigest != "" && l.Digest() != st.ObjectDigest {
		_ = l.Close()
		return nil, errListChanged
	}
	for range skip {
		inv, err := l.Next()
		if err != nil {
			_ = l.Close()
			if errors.Is(err, errEndOfList) {
				return nil, errListChanged
			}
			return nil, err
		}
		skipped(inv)
	}
	return l, nil
}

// openObject opens the object store list of a campaign as a stream.
func (c *campaigns) openObject(ctx context.Context, st *campaignState) (*streamList, error) {
	ref := st.Object
	store, err := c.w.js.ObjectStore(ctx, ref.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, Permanent(fmt.Errorf("invites_object: no object store %q", ref.Bucket))
	}
	if err != nil {
		return nil, fmt.Errorf("invites_object: open %s: %w", ref.Bucket, err)
	}
	// A read without a deadline gets the client's default timeout (5 s)
	// for the whole object; a fan-out reads for as long as the campaign
	// runs, at the pace of its sends (flow control holds the rest back).
	rctx, cancel := context.WithDeadline(ctx, time.Now().Add(objectReadLimit))
	r, err := store.Get(rctx, ref.Name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		cancel()
		return nil, Permanent(fmt.Errorf("invites_object: no object %q in %s", ref.Name, ref.Bucket))
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("invites_object: read %s/%s: %w", ref.Bucket, ref.Name, err)
	}
	info, err := r.Info()
	if err != nil {
		_ = r.Close() // only read; the Info error is the one to report
		cancel()
		return nil, fmt.Errorf("invites_object: read %s/%s: %w", ref.Bucket, ref.Name, err)
	}
	return newStreamList(closeBoth{r, cancel}, info.Digest, ref.Bucket+"/"+ref.Name), nil
}

// objectReadLimit bounds one read of an invite list; a holder that is
// still reading after it fails and resumes from its checkpoint.
const objectReadLimit = 7 * 24 * time.Hour

type closeBoth struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c closeBoth) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

type sliceList struct{ invites []events.Invite }

func (l *sliceList) Next() (events.Invite, error) {
	if len(l.invites) == 0 {
		return events.Invite{}, errEndOfList
	}
	inv := l.invites[0]
	l.invites = l.invites[1:]
	return inv, nil
}
func (l *sliceList) Digest() string { return "" }
func (l *sliceList) Close() error   { return nil }

// maxInviteLine bounds one NDJSON line (an invite is well under 1 KiB).
const maxInviteLine = 64 << 10

// streamList reads invites from a reader as NDJSON (one {"to","group_id"}
// per line, blank lines skipped) or as one JSON array, whichever the first
// byte says, one invite at a time: memory stays flat whatever the size.
type streamList struct {
	r      io.ReadCloser
	br     *bufio.Reader
	digest string
	name   string
	array  *json.Decoder // set in array mode
	// arrayIn is what array reads: the list, held to maxInviteLine past
	// the end of the last invite, as a line is.
	arrayIn *boundedReader
	begun   bool
	line    int
}

// boundedReader reads at most left more bytes, then fails with
// errInviteTooLong.
type boundedReader struct {
	r    io.Reader
	read int64 // in all
	left int64
}

var errInviteTooLong = fmt.Errorf("an invite longer than %d bytes", maxInviteLine)

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errInviteTooLong
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	b.left -= int64(n)
	return n, err
}

// allow lets the decoder read up to maxInviteLine past offset, the end of
// what it has decoded: a decoder takes a whole value in memory, however
// large.
func (b *boundedReader) allow(offset int64) { b.left = offset + maxInviteLine - b.read }

func newStreamList(r io.ReadCloser, digest, name string) *streamList {
	return &streamList{r: r, br: bufio.NewReaderSize(r, maxInviteLine), digest: digest, name: name}
}

func (l *streamList) Digest() string { return l.digest }
func (l *streamList) Close() error   { return l.r.Close() }

func (l *streamList) Next() (events.Invite, error) {
	if !l.begun {
		l.begun = true
		if err := l.begin(); err != nil {
			return events.Invite{}, err
		}
	}
	if l.array != nil {
		return l.nextInArray()
	}
	for {
		b, err := l.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return events.Invite{}, Permanent(fmt.Errorf("invites_object %s line %d: longer than %d bytes", l.name, l.line+1, maxInviteLine))
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return events.Invite{}, fmt.Errorf("invites_object %s: %w", l.name, err)
		}
		if len(b) == 0 && errors.Is(err, io.EOF) {
			return events.Invite{}, errEndOfList
		}
		l.line++
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			continue
		}
		inv, derr := decodeInvite(b)
		if derr != nil {
			return events.Invite{}, Permanent(fmt.Errorf("invites_object %s line %d: %w", l.name, l.line, derr))
		}
		return inv, nil
	}
}

// begin looks at the first byte that is not white space.
func (l *streamList) begin() error {
	for {
		b, err := l.br.Peek(1)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil // empty: Next ends at once
			}
			return fmt.Errorf("invites_object %s: %w", l.name, err)
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			if b[0] == '\n' {
				l.line++
			}
			_, _ = l.br.ReadByte()
			continue
		case '[':
			l.arrayIn = &boundedReader{r: l.br, left: maxInviteLine}
			l.array = json.NewDecoder(l.arrayIn)
			l.array.DisallowUnknownFields()
			if _, err := l.array.Token(); err != nil {
				return Permanent(fmt.Errorf("invites_object %s: %w", l.name, err))
			}
		}
		return nil
	}
}

func (l *streamList) nextInArray() (events.Invite, error) {
	l.arrayIn.allow(l.array.InputOffset())
	if !l.array.More() {
		if _, err := l.array.Token(); err != nil {
			return events.Invite{}, Permanent(fmt.Errorf("invites_object %s: %w", l.name, err))
		}
		return events.Invite{}, errEndOfList
	}
	l.line++
	var inv events.Invite
	if err := l.array.Decode(&inv); err != nil {
		return events.Invite{}, Permanent(fmt.Errorf("invites_object %s, invite %d: %w", l.name, l.line, err))
	}
	return inv, nil
}

// decodeInvite reads one invite strictly: an object with exactly the known
// fields, nothing after it.
func decodeInvite(b []byte) (events.Invite, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var inv events.Invite
	if err := dec.Decode(&inv); err != nil {
		return events.Invite{}, err
	}
	if dec.More() {
		return events.Invite{}, errors.New("more than one JSON value on the line")
	}
	return inv, nil
}

// seenSet holds the invites of a list seen so far, as the 64-bit FNV-1a
// hash of their Key in an open-addressing table sized for the whole list
// at three quarters full: about 10.7 bytes per invite (10.7 MB for a
// million). Two distinct invites whose hashes collide (odds about n²/2⁶⁵,
// 3·10⁻⁸ for a million) would have the second skipped as a duplicate:
// never a second send. Not a map[uint64]struct{}: presized for a million
// keys, one held 37.8 bytes per key on go1.26 (measured), 3.5 times this.
type seenSet struct {
	slots []uint64 // 0: empty
	n     int
}

func newSeenSet(size int) *seenSet { return &seenSet{slots: make([]uint64, size+size/3+1)} }

// add records inv and reports whether it is the first with its Key.
func (s *seenSet) add(inv events.Invite) bool {
	if 4*(s.n+1) > 3*len(s.slots) { // more invites than the list had: grow
		old := s.slots
		s.slots, s.n = make([]uint64, 2*len(old)), 0
		for _, k := range old {
			if k != 0 {
				s.insert(k)
			}
		}
	}
	return s.insert(seenKey(inv))
}

func (s *seenSet) insert(k uint64) bool {
	i, _ := bits.Mul64(k, uint64(len(s.slots)))
	for {
		switch s.slots[i] {
		case 0:
			s.slots[i] = k
			s.n++
			return true
		case k:
			return false
		}
		if i++; i == uint64(len(s.slots)) {
			i = 0
		}
	}
}

// seenKey hashes an invite's Key the same way in every worker: FNV-1a,
// mixed (the table is indexed by the high bits), never 0.
func seenKey(inv events.Invite) uint64 {
	k := uint64(14695981039346656037)
	for _, c := range []byte(inv.Key()) {
		k = (k ^ uint64(c)) * 1099511628211
	}
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	return max(k, 1)
}
