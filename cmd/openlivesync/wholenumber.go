package main

import (
	"errors"
	"flag"
	"reflect"
	"time"

	"github.com/openlivesync/livesync"
)

// wholeNumberLimits makes the integer limits' flags on fs say "not a
// whole number" where the library says "not a number": 1.5 is a number,
// and the operator who wrote it needs to hear what is wanted instead.
func wholeNumberLimits(fs *flag.FlagSet) {
	limits := reflect.TypeFor[livesync.Limits]()
	for _, info := range livesync.LimitTable() {
		field, ok := limits.FieldByName(info.Field)
		f := fs.Lookup(info.Flag)
		if !ok || f == nil || field.Type == reflect.TypeFor[time.Duration]() {
			continue
		}
		switch field.Type.Kind() {
		case reflect.Int, reflect.Int64:
			f.Value = wholeNumber{f.Value}
		}
	}
}

// wholeNumber is an integer limit's flag.Value, with the wording of
// wholeNumberLimits.
type wholeNumber struct{ flag.Value }

func (w wholeNumber) Set(s string) error {
	err := w.Value.Set(s)
	if err != nil && err.Error() == "not a number" {
		return errors.New("not a whole number")
	}
	return err
}

// String is the limit's; on the zero value flag.PrintDefaults makes to
// tell a default from none, empty, as the limit's own is.
func (w wholeNumber) String() string {
	if w.Value == nil {
		return ""
	}
	return w.Value.String()
}
