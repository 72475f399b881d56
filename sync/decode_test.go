package sync

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/revoked-dev/revoked/event"
)

// TestDecodeKnowsEveryEventField fails when event.Event gains a JSON field the fast
// decoder does not read: it would skip that field as unknown where event.Decode fills
// it (client_id and source were once missed that way), and each field decodes alike.
func TestDecodeKnowsEveryEventField(t *testing.T) {
	typ := reflect.TypeFor[event.Event]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if !slices.Contains(eventFields, name) {
			t.Errorf("event.Event field %s (%q) is not in eventFields", typ.Field(i).Name, name)
			continue
		}
		value := `"v"`
		if typ.Field(i).Type.Kind() == reflect.Int64 {
			value = "7"
		}
		p := []byte(`{"` + name + `":` + value + `}`)
		want, _ := event.Decode(p, nil)
		got, ok := fastDecode(p, false)
		if !ok || got != want {
			t.Errorf("%s: fast path %+v (ok %v), event.Decode %+v", p, got, ok, want)
		}
	}
}
