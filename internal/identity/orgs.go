package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Shape is a form of Keycloak's organization claim (mapper
// oidc-organization-membership-mapper).
type Shape int

const (
	// ShapeAbsent: the user has no organization, or the mapper is off.
	ShapeAbsent Shape = iota
	// ShapeList: ["acme","globex"], the mapper's default.
	ShapeList
	// ShapeMap: {"acme":{"id":"<uuid>"}}, with "Add organization id".
	ShapeMap
	// ShapeMapAttributes: {"acme":{"id":"<uuid>","tier":["gold"]}}, with
	// "Add organization attributes" too.
	ShapeMapAttributes
	// ShapeSingle: "acme", the mapper with multivalued off.
	ShapeSingle
	// ShapeEmptyObject: {}, which APISIX before 3.18 writes for an empty list.
	ShapeEmptyObject
)

var shapeNames = map[Shape]string{
	ShapeAbsent: "absent", ShapeList: "list", ShapeMap: "map", ShapeMapAttributes: "map_attributes",
	ShapeSingle: "single", ShapeEmptyObject: "empty_object",
}

func (s Shape) String() string { return shapeNames[s] }

// Organization is one membership.
type Organization struct {
	Alias string
	// ID is Keycloak's organization id; "" when the claim was a list of aliases.
	ID string
	// Attributes are the organization's attributes; nil when unknown.
	Attributes map[string][]string
	// Groups are the paths of the organization's groups the user is in
	// (Keycloak 26.6+), written as "groups" whatever the shape, like the
	// organization-group membership mapper; nil: not written.
	Groups []string
}

// Organizations is the parsed claim, remembering the shape it came in.
type Organizations struct {
	Shape Shape
	List  []Organization
}

// clone copies the list and the attributes, so that the copy shares nothing
// that can be changed with o.
func (o Organizations) clone() Organizations {
	if o.List == nil {
		return o
	}
	list := make([]Organization, len(o.List))
	for i, org := range o.List {
		list[i] = Organization{Alias: org.Alias, ID: org.ID}
		if org.Groups != nil {
			// nil and empty differ: empty is written as "groups":[].
			list[i].Groups = append([]string{}, org.Groups...)
		}
		if org.Attributes != nil {
			list[i].Attributes = make(map[string][]string, len(org.Attributes))
			for k, v := range org.Attributes {
				list[i].Attributes[k] = append([]string(nil), v...)
			}
		}
	}
	return Organizations{Shape: o.Shape, List: list}
}

// Aliases returns the aliases in order.
func (o Organizations) Aliases() []string {
	out := make([]string, len(o.List))
	for i, org := range o.List {
		out[i] = org.Alias
	}
	return out
}

// ParseOrganizations accepts every shape Keycloak or APISIX produce.
func ParseOrganizations(raw json.RawMessage) (Organizations, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return Organizations{Shape: ShapeAbsent}, nil
	}
	switch raw[0] {
	case 'n':
		if string(raw) == "null" {
			return Organizations{Shape: ShapeAbsent}, nil
		}
	case '"':
		var alias string
		if err := json.Unmarshal(raw, &alias); err != nil {
			return Organizations{}, errors.New("invalid string")
		}
		if alias == "" {
			return Organizations{Shape: ShapeSingle}, nil
		}
		return Organizations{Shape: ShapeSingle, List: []Organization{{Alias: alias}}}, nil
	case '[':
		var aliases []string
		if err := json.Unmarshal(raw, &aliases); err != nil {
			return Organizations{}, errors.New("a list must hold only strings")
		}
		list := make([]Organization, 0, len(aliases))
		for _, a := range aliases {
			if a == "" {
				return Organizations{}, errors.New("empty alias in list")
			}
			list = append(list, Organization{Alias: a})
		}
		return Organizations{Shape: ShapeList, List: list}, nil
	case '{':
		return parseOrgMap(raw)
	}
	return Organizations{}, errors.New("expected a list, an object or a string")
}

func parseOrgMap(raw json.RawMessage) (Organizations, error) {
	var m map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return Organizations{}, errors.New("each organization in the object must be an object")
	}
	if len(m) == 0 {
		return Organizations{Shape: ShapeEmptyObject}, nil
	}
	aliases := make([]string, 0, len(m))
	for a := range m {
		aliases = append(aliases, a)
	}
	// JSON objects have no order; sort so output is stable.
	sort.Strings(aliases)
	out := Organizations{Shape: ShapeMap, List: make([]Organization, 0, len(m))}
	for _, alias := range aliases {
		if alias == "" {
			return Organizations{}, errors.New("empty alias in object")
		}
		org := Organization{Alias: alias}
		for k, v := range m[alias] {
			if k == "id" {
				if err := json.Unmarshal(v, &org.ID); err != nil {
					return Organizations{}, fmt.Errorf("%s.id must be a string", alias)
				}
				continue
			}
			var values []string
			if err := json.Unmarshal(v, &values); err != nil {
				var one string
				if err := json.Unmarshal(v, &one); err != nil {
					return Organizations{}, fmt.Errorf("%s.%s must be a list of strings", alias, k)
				}
				values = []string{one}
			}
			if org.Attributes == nil {
				org.Attributes = map[string][]string{}
			}
			org.Attributes[k] = values
			out.Shape = ShapeMapAttributes
		}
		out.List = append(out.List, org)
	}
	return out, nil
}

// Encode writes the claim in the given shape. ShapeAbsent, ShapeEmptyObject
// and an unknown shape write the map shape, which is what the apps parse
// when they read ids (MIT's: v["id"] for v in organization.values()).
// ShapeSingle writes a string for one organization and a list otherwise.
//
// With groups, Keycloak's organization-group membership mapper turns every
// form into an object: a list or a single alias becomes {"<alias>":{"groups":
// [...]}}, without id.
func (o Organizations) Encode(shape Shape) json.RawMessage {
	if (shape == ShapeList || shape == ShapeSingle) && o.hasGroups() {
		return o.encodeMapWith(false, false)
	}
	switch shape {
	case ShapeList:
		return mustJSON(o.Aliases())
	case ShapeSingle:
		if len(o.List) == 1 {
			return mustJSON(o.List[0].Alias)
		}
		return mustJSON(o.Aliases())
	case ShapeMapAttributes:
		return o.encodeMap(true)
	default:
		return o.encodeMap(false)
	}
}

func (o Organizations) hasGroups() bool {
	for _, org := range o.List {
		if org.Groups != nil {
			return true
		}
	}
	return false
}

func (o Organizations) encodeMap(withAttributes bool) json.RawMessage {
	return o.encodeMapWith(true, withAttributes)
}

func (o Organizations) encodeMapWith(withID, withAttributes bool) json.RawMessage {
	m := make(map[string]map[string]any, len(o.List))
	for _, org := range o.List {
		entry := map[string]any{}
		if withID && org.ID != "" {
			entry["id"] = org.ID
		}
		if withAttributes {
			for k, v := range org.Attributes {
				if k != "id" {
					entry[k] = v
				}
			}
		}
		// The group mapper runs after the membership mapper: its "groups"
		// replaces an attribute of that name.
		if org.Groups != nil {
			entry["groups"] = org.Groups
		}
		m[org.Alias] = entry
	}
	return mustJSON(m)
}

// HeaderValue joins the aliases with "," for a plain header.
func (o Organizations) HeaderValue() string {
	return strings.Join(o.Aliases(), ",")
}

// Equal reports whether both hold the same organizations (alias, id and
// attributes), whatever the order.
func (o Organizations) Equal(other Organizations) bool {
	if len(o.List) != len(other.List) {
		return false
	}
	a, b := string(o.encodeMap(true)), string(other.encodeMap(true))
	return a == b
}

// Diff returns the aliases in o that other lacks, and those other has that o lacks.
func (o Organizations) Diff(other Organizations) (added, removed []string) {
	return DiffAliases(other.Aliases(), o.Aliases())
}

// DiffAliases returns the aliases in now but not in before, and those in
// before but not in now, each in their list's order.
func DiffAliases(before, now []string) (added, removed []string) {
	had := make(map[string]bool, len(before))
	for _, a := range before {
		had[a] = true
	}
	has := make(map[string]bool, len(now))
	for _, a := range now {
		has[a] = true
		if !had[a] {
			added = append(added, a)
		}
	}
	for _, a := range before {
		if !has[a] {
			removed = append(removed, a)
		}
	}
	return added, removed
}

// mustJSON encodes strings, string lists and maps of them, which cannot fail;
// a plugin must never panic (the runner would drop the connection), so the
// impossible error still yields valid JSON.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}
