package testenv

import "reflect"

// PointerField names a part of typ that is or holds a pointer, or "".
func PointerField(typ reflect.Type) string {
	switch typ.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return ""
	case reflect.Array:
		return PointerField(typ.Elem())
	case reflect.Struct:
		for i := range typ.NumField() {
			if p := PointerField(typ.Field(i).Type); p != "" {
				return typ.Field(i).Name + ": " + p
			}
		}
		return ""
	}
	return typ.String()
}
