// Package config loads typed configuration from environment variables.
//
// A configuration is a plain struct whose fields carry tags:
//
//	type Config struct {
//		Brokers    []string      `env:"KAFKA_BROKERS" default:"127.0.0.1:9092" help:"Kafka bootstrap servers"`
//		Partitions int           `env:"KAFKA_PARTITIONS" default:"3" help:"partitions per topic"`
//		Timeout    time.Duration `env:"RPC_TIMEOUT" default:"10s" help:"default per-call deadline"`
//		Secret     string        `env:"JWT_KEY_FILE" required:"true" help:"path of the signing key"`
//	}
//
// Supported field types are string, bool, int, int64, uint, float64,
// time.Duration, []string (comma-separated) and any type implementing
// encoding.TextUnmarshaler (slog.Level, for example). Struct-typed fields
// without an env tag are walked recursively, so per-component configs compose
// into one service config. Fields without an env tag that are not structs are
// left alone (loggers, callbacks and other wiring).
//
// [Load] fills the struct, then calls Validate on every struct that implements
// [Validator] (innermost first), so a service fails fast at start-up with a
// message that names the variable. [Usage] renders the same tags as a table
// for --help output.
package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Validator is implemented by configuration structs that check invariants
// across fields. [Load] calls Validate after every field is set; the error
// should name the offending variable.
type Validator interface {
	Validate() error
}

// LookupFunc reports the value of a variable and whether it is set.
// os.LookupEnv satisfies it; tests pass a map-backed function.
type LookupFunc func(name string) (string, bool)

// MapLookup returns a [LookupFunc] reading from m. It is meant for tests and
// for layering explicit overrides on top of the environment.
func MapLookup(m map[string]string) LookupFunc {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// Load fills the struct pointed to by dst from lookup. For every field tagged
// env:"NAME" it uses the looked-up value when it is set and non-empty,
// otherwise the default tag; a field tagged required:"true" with neither is
// an error. After all fields are set, Validate is called on each struct that
// implements [Validator], nested structs before their parent.
//
// Every problem is reported, joined into one error; each message names the
// variable and the bad value, e.g. `KAFKA_PARTITIONS: "abc" is not an integer`.
// A malformed default tag is reported the same way (it is a programming
// error, but surfacing it at start-up is cheaper than a panic).
//
// Load panics only if dst is not a non-nil pointer to a struct. It keeps no
// state and may be called concurrently on distinct destinations.
func Load(dst any, lookup func(string) (string, bool)) error {
	v := structValue(dst)
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	var errs []error
	loadStruct(v, lookup, &errs)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return validate(v)
}

func structValue(dst any) reflect.Value {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("config: destination must be a non-nil pointer to a struct, got %T", dst))
	}
	return v.Elem()
}

func loadStruct(v reflect.Value, lookup func(string) (string, bool), errs *[]error) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		fv := v.Field(i)
		name, tagged := sf.Tag.Lookup("env")
		if !tagged {
			if isNestedStruct(sf.Type) {
				loadStruct(fv, lookup, errs)
			}
			continue
		}
		raw, set := lookup(name)
		if !set || raw == "" {
			def, hasDefault := sf.Tag.Lookup("default")
			if !hasDefault {
				if sf.Tag.Get("required") == "true" {
					*errs = append(*errs, fmt.Errorf("%s: required but not set", name))
				}
				continue
			}
			raw = def
		}
		if err := setField(fv, raw); err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %q %w", name, raw, err))
		}
	}
}

func isNestedStruct(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != durationType && !reflect.PointerTo(t).Implements(textUnmarshalerType)
}

// errUnsupported marks a field type Load cannot fill.
type errUnsupported struct{ t reflect.Type }

func (e errUnsupported) Error() string {
	return "cannot be assigned to unsupported type " + e.t.String()
}

func setField(fv reflect.Value, raw string) error {
	if fv.CanAddr() {
		if u, ok := fv.Addr().Interface().(encoding.TextUnmarshaler); ok {
			if err := u.UnmarshalText([]byte(raw)); err != nil {
				return fmt.Errorf("is not a valid %s: %v", fv.Type(), err)
			}
			return nil
		}
	}
	if fv.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return errors.New("is not a duration (e.g. 500ms, 10s, 1m30s)")
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("is not a boolean (true or false)")
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, fv.Type().Bits())
		if err != nil {
			return errors.New("is not an integer")
		}
		fv.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, fv.Type().Bits())
		if err != nil {
			return errors.New("is not a non-negative integer")
		}
		fv.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(raw, fv.Type().Bits())
		if err != nil {
			return errors.New("is not a number")
		}
		fv.SetFloat(f)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return errUnsupported{fv.Type()}
		}
		var items []string
		for item := range strings.SplitSeq(raw, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		s := reflect.MakeSlice(fv.Type(), len(items), len(items))
		for i, item := range items {
			s.Index(i).SetString(item)
		}
		fv.Set(s)
	default:
		return errUnsupported{fv.Type()}
	}
	return nil
}

func validate(v reflect.Value) error {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		if _, tagged := sf.Tag.Lookup("env"); tagged || !isNestedStruct(sf.Type) {
			continue
		}
		if err := validate(v.Field(i)); err != nil {
			return err
		}
	}
	if v.CanAddr() {
		if val, ok := v.Addr().Interface().(Validator); ok {
			return val.Validate()
		}
	}
	return nil
}

// Usage returns a table of the variables dst reads: name, default (with
// "(required)" for required variables without one) and help text, one
// variable per line in field order, nested structs included. It is meant
// for --help output. Usage only reads struct tags, so dst may be a zero
// value; it panics if dst is not a non-nil pointer to a struct.
func Usage(dst any) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tDESCRIPTION")
	usageStruct(structValue(dst).Type(), tw)
	_ = tw.Flush() // writes to a strings.Builder cannot fail
	return b.String()
}

func usageStruct(t reflect.Type, tw *tabwriter.Writer) {
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, tagged := sf.Tag.Lookup("env")
		if !tagged {
			if isNestedStruct(sf.Type) {
				usageStruct(sf.Type, tw)
			}
			continue
		}
		def, hasDefault := sf.Tag.Lookup("default")
		switch {
		case !hasDefault && sf.Tag.Get("required") == "true":
			def = "(required)"
		case def == "":
			def = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, def, sf.Tag.Get("help"))
	}
}
