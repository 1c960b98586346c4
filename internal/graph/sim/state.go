package sim

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// number is one business phone number (phone_number_id). Its lock guards
// its group list, limits and pair-rate memory; groups have their own locks.
type number struct {
	id      string
	display string
	version string // paging cursor versionId

	mu               sync.Mutex
	groups           []*group // creation order, including deleted ones
	active           int
	ineligible       bool
	creationDisabled bool
	pairs            map[string]time.Time // recipient → last 1:1 send

	msgs *rate.Limiter // nil: unlimited
	ops  *rate.Limiter // nil: unlimited
}

// group is one group's state; mu guards everything below it.
type group struct {
	id        string
	gnum      string // group JID number
	phone     *number
	seq       uint64
	createdAt time.Time
	approval  string // "approval_required" | "auto_approve"

	mu           sync.RWMutex
	subject      string
	description  string
	pictureSHA   string
	suspended    bool
	deleted      bool
	link         string // link id; "" after DELETE invite_link
	participants []string
	members      map[string]bool
	removed      map[string]bool
	requests     []*joinRequest // pending, oldest first
	reqSeq       uint64
	serviceUntil time.Time
	sent         map[string]bool // wamids sent to the group (pin targets)
	pinned       []string
}

type joinRequest struct {
	id        string
	waID      string
	seq       uint64
	createdAt time.Time
}

// user is a simulated WhatsApp user.
type user struct {
	waID         string
	userID       string
	parentUserID string
	username     string

	tosRejected   atomic.Bool
	undeliverable atomic.Int32 // undeliverableNone | Sync | Async
}

// Undeliverable modes for SetUndeliverable.
const (
	UndeliverableNone  = ""
	UndeliverableSync  = "sync"  // sends answer 131026 synchronously
	UndeliverableAsync = "async" // sends are accepted, then a failed status with 131026 follows
)

func (s *Server) number(id string) *number {
	if n, ok := s.numbers.Load(id); ok {
		return n.(*number)
	}
	n := &number{id: id, display: displayPhone(id), version: "v1-" + id, pairs: map[string]time.Time{}}
	if s.cfg.MPS > 0 {
		n.msgs = rate.NewLimiter(rate.Limit(s.cfg.MPS), s.cfg.MPS)
	}
	if s.cfg.GroupOpsPerSecond > 0 {
		n.ops = rate.NewLimiter(rate.Limit(s.cfg.GroupOpsPerSecond), s.cfg.GroupOpsPerSecond)
	}
	actual, _ := s.numbers.LoadOrStore(id, n)
	return actual.(*number)
}

func (s *Server) user(waID string) *user {
	if u, ok := s.users.Load(waID); ok {
		return u.(*user)
	}
	u := &user{waID: waID}
	u.userID, u.parentUserID, u.username = bsuidFor(uint64(s.cfg.Seed), waID)
	actual, loaded := s.users.LoadOrStore(waID, u)
	if !loaded {
		s.bsuids.Store(u.userID, waID)
	}
	return actual.(*user)
}

// liveGroup returns the group with this id unless it is unknown or deleted.
func (s *Server) liveGroup(id string) *group {
	v, ok := s.groups.Load(id)
	if !ok {
		return nil
	}
	g := v.(*group)
	g.mu.RLock()
	deleted := g.deleted
	g.mu.RUnlock()
	if deleted {
		return nil
	}
	return g
}

// State is a snapshot of everything the simulator holds.
type State struct {
	Numbers   []NumberState   `json:"numbers"`
	Users     []UserState     `json:"users"`
	Templates []TemplateState `json:"templates"`
	// PendingWebhooks counts webhooks scheduled or being delivered.
	PendingWebhooks int `json:"pending_webhooks"`
	// Calls counts the remembered Graph calls.
	Calls int `json:"calls"`
}

// NumberState describes one business phone number.
type NumberState struct {
	PhoneNumberID         string       `json:"phone_number_id"`
	DisplayPhoneNumber    string       `json:"display_phone_number"`
	ActiveGroups          int          `json:"active_groups"`
	Eligible              bool         `json:"eligible"`
	GroupCreationDisabled bool         `json:"group_creation_disabled"`
	Groups                []GroupState `json:"groups"`
}

// GroupState describes one group, deleted ones included.
type GroupState struct {
	ID               string             `json:"id"`
	PhoneNumberID    string             `json:"phone_number_id"`
	Subject          string             `json:"subject"`
	Description      string             `json:"description,omitempty"`
	JoinApprovalMode string             `json:"join_approval_mode"`
	Suspended        bool               `json:"suspended"`
	Deleted          bool               `json:"deleted"`
	CreatedAt        time.Time          `json:"created_at"`
	InviteLink       string             `json:"invite_link,omitempty"`
	Participants     []string           `json:"participants"`
	Removed          []string           `json:"removed,omitempty"`
	JoinRequests     []JoinRequestState `json:"join_requests,omitempty"`
	PictureSHA256    string             `json:"picture_sha256,omitempty"`
	Pinned           []string           `json:"pinned,omitempty"`
}

// JoinRequestState describes one pending join request.
type JoinRequestState struct {
	ID        string    `json:"join_request_id"`
	WAID      string    `json:"wa_id"`
	CreatedAt time.Time `json:"created_at"`
}

// UserState describes one simulated user.
type UserState struct {
	WAID          string `json:"wa_id"`
	UserID        string `json:"user_id"`
	Username      string `json:"username"`
	TOSAccepted   bool   `json:"tos_accepted"`
	Undeliverable string `json:"undeliverable,omitempty"`
}

// TemplateState describes one template of the WABA.
type TemplateState struct {
	ID                  string `json:"id"`
	Name                string `json:"name"`
	Language            string `json:"language"`
	Category            string `json:"category"`
	Status              string `json:"status"`
	LibraryTemplateName string `json:"library_template_name,omitempty"`
}

func (g *group) snapshot() GroupState {
	g.mu.RLock()
	defer g.mu.RUnlock()
	gs := GroupState{
		ID:               g.id,
		PhoneNumberID:    g.phone.id,
		Subject:          g.subject,
		Description:      g.description,
		JoinApprovalMode: g.approval,
		Suspended:        g.suspended,
		Deleted:          g.deleted,
		CreatedAt:        g.createdAt,
		Participants:     slices.Clone(g.participants),
		PictureSHA256:    g.pictureSHA,
		Pinned:           slices.Clone(g.pinned),
	}
	if gs.Participants == nil {
		gs.Participants = []string{}
	}
	if g.link != "" {
		gs.InviteLink = inviteURL(g.link)
	}
	for w := range g.removed {
		gs.Removed = append(gs.Removed, w)
	}
	slices.Sort(gs.Removed)
	for _, r := range g.requests {
		gs.JoinRequests = append(gs.JoinRequests, JoinRequestState{ID: r.id, WAID: r.waID, CreatedAt: r.createdAt})
	}
	return gs
}

// Group returns one group's state, deleted groups included.
func (s *Server) Group(id string) (GroupState, bool) {
	v, ok := s.groups.Load(id)
	if !ok {
		return GroupState{}, false
	}
	return v.(*group).snapshot(), true
}

// State returns a snapshot of all numbers, groups, users and templates.
func (s *Server) State() State {
	st := State{Numbers: []NumberState{}, Users: []UserState{}, Templates: s.templateStates()}
	s.numbers.Range(func(_, v any) bool {
		n := v.(*number)
		n.mu.Lock()
		ns := NumberState{
			PhoneNumberID:         n.id,
			DisplayPhoneNumber:    n.display,
			ActiveGroups:          n.active,
			Eligible:              !n.ineligible,
			GroupCreationDisabled: n.creationDisabled,
		}
		groups := slices.Clone(n.groups)
		n.mu.Unlock()
		ns.Groups = make([]GroupState, 0, len(groups))
		for _, g := range groups {
			ns.Groups = append(ns.Groups, g.snapshot())
		}
		st.Numbers = append(st.Numbers, ns)
		return true
	})
	slices.SortFunc(st.Numbers, func(a, b NumberState) int { return cmp.Compare(a.PhoneNumberID, b.PhoneNumberID) })
	s.users.Range(func(_, v any) bool {
		u := v.(*user)
		st.Users = append(st.Users, UserState{
			WAID: u.waID, UserID: u.userID, Username: u.username,
			TOSAccepted:   !u.tosRejected.Load(),
			Undeliverable: undeliverableName(u.undeliverable.Load()),
		})
		return true
	})
	slices.SortFunc(st.Users, func(a, b UserState) int { return cmp.Compare(a.WAID, b.WAID) })
	st.PendingWebhooks = s.hooks.pending()
	st.Calls = s.calls.len()
	return st
}

func undeliverableName(v int32) string {
	switch v {
	case 1:
		return UndeliverableSync
	case 2:
		return UndeliverableAsync
	}
	return UndeliverableNone
}

func inviteURL(linkID string) string { return "https://chat.whatsapp.com/" + linkID }
