package api

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/strata-infra/strata/pkg/api"
)

// MaxListItems bounds every list and map in a spec whose field has no
// tighter `maxitems` tag: a request is refused before it reaches the
// commit's write lock, so one tenant's huge spec never stalls another's.
const MaxListItems = 256

// checkLists refuses a decoded spec holding a list or map longer than its
// field allows, naming the field and the limit.
func checkLists(v any, prefix string) error {
	return walkLists(reflect.ValueOf(v), prefix, MaxListItems)
}

func walkLists(v reflect.Value, field string, limit int) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return walkLists(v.Elem(), field, limit)
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			lim := MaxListItems
			if s := f.Tag.Get("maxitems"); s != "" {
				lim, _ = strconv.Atoi(s)
			}
			if err := walkLists(v.Field(i), field+"."+name, lim); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array, reflect.Map:
		if v.Kind() != reflect.Array && v.Len() > limit {
			return api.Fieldf(field, "has %d items, more than the limit of %d", v.Len(), limit)
		}
		if v.Kind() == reflect.Map {
			return nil // maps of strings here; their size is what is bounded
		}
		for i := 0; i < v.Len(); i++ {
			if err := walkLists(v.Index(i), fmt.Sprintf("%s[%d]", field, i), MaxListItems); err != nil {
				return err
			}
		}
	}
	return nil
}
