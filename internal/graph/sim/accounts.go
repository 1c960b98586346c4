package sim

import (
	"slices"
)

// accountOf is the WhatsApp Business Account phone belongs to:
// Config.Accounts, else WABAID.
func (s *Server) accountOf(phone string) string {
	if w, ok := s.cfg.Accounts[phone]; ok && w != "" {
		return w
	}
	return s.cfg.WABAID
}

// knownAccount says whether waba is an account of the simulator's.
func (s *Server) knownAccount(waba string) bool {
	if waba == s.cfg.WABAID {
		return true
	}
	for _, w := range s.cfg.Accounts {
		if w == waba {
			return true
		}
	}
	return false
}

type phoneNumberJSON struct {
	ID                 string `json:"id"`
	DisplayPhoneNumber string `json:"display_phone_number"`
	VerifiedName       string `json:"verified_name"`
}

// GET /{WABA_ID}/phone_numbers: the account's numbers, those named in
// Config.Accounts and those used so far, in one page. An account the
// simulator does not have is an object Graph does not know (100/33).
func (s *Server) phoneNumbers(rq *request) response {
	if !s.knownAccount(rq.id) {
		return s.fail(errUnsupported(rq.method, rq.id))
	}
	var ids []string
	for phone, w := range s.cfg.Accounts {
		if w == rq.id {
			ids = append(ids, phone)
		}
	}
	s.numbers.Range(func(k, _ any) bool {
		if id := k.(string); s.accountOf(id) == rq.id && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
		return true
	})
	slices.Sort(ids)
	data := make([]phoneNumberJSON, 0, len(ids))
	for _, id := range ids {
		data = append(data, phoneNumberJSON{ID: id, DisplayPhoneNumber: displayPhone(id), VerifiedName: "Business " + id[max(0, len(id)-4):]})
	}
	out := map[string]any{"data": data}
	if len(data) > 0 {
		out["paging"] = pagingJSON{Cursors: cursorsJSON{Before: encodeCursor(0, "phone_numbers"), After: encodeCursor(uint64(len(data)), "phone_numbers")}}
	}
	return s.ok(out)
}
