package identity

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleOrgs() Organizations {
	return Organizations{Shape: ShapeMapAttributes, List: []Organization{
		{Alias: "acme", ID: "u1", Attributes: map[string][]string{"tier": {"gold"}}},
		{Alias: "globex", ID: "u2"},
	}}
}

func TestOrganizationsEncode(t *testing.T) {
	one := Organizations{Shape: ShapeMap, List: []Organization{{Alias: "acme", ID: "u1", Attributes: map[string][]string{"tier": {"gold"}}}}}
	none := Organizations{Shape: ShapeAbsent}

	tests := []struct {
		name      string
		orgs      Organizations
		shape     Shape
		wantJSON  string
		wantShape Shape
		// wantList is what parsing the encoding gives back.
		wantList []Organization
	}{
		{
			name: "list", orgs: sampleOrgs(), shape: ShapeList,
			wantJSON: `["acme","globex"]`, wantShape: ShapeList,
			wantList: []Organization{{Alias: "acme"}, {Alias: "globex"}},
		},
		{
			name: "map", orgs: sampleOrgs(), shape: ShapeMap,
			wantJSON: `{"acme":{"id":"u1"},"globex":{"id":"u2"}}`, wantShape: ShapeMap,
			wantList: []Organization{{Alias: "acme", ID: "u1"}, {Alias: "globex", ID: "u2"}},
		},
		{
			name: "map_attributes", orgs: sampleOrgs(), shape: ShapeMapAttributes,
			wantJSON: `{"acme":{"id":"u1","tier":["gold"]},"globex":{"id":"u2"}}`, wantShape: ShapeMapAttributes,
			wantList: sampleOrgs().List,
		},
		{
			name: "map_attributes without attributes reads back as map", orgs: Organizations{List: []Organization{{Alias: "acme", ID: "u1"}}},
			shape: ShapeMapAttributes, wantJSON: `{"acme":{"id":"u1"}}`, wantShape: ShapeMap,
			wantList: []Organization{{Alias: "acme", ID: "u1"}},
		},
		{
			name: "map without ids", orgs: Organizations{List: []Organization{{Alias: "acme"}}}, shape: ShapeMap,
			wantJSON: `{"acme":{}}`, wantShape: ShapeMap, wantList: []Organization{{Alias: "acme"}},
		},
		{
			name: "single with one org", orgs: one, shape: ShapeSingle,
			wantJSON: `"acme"`, wantShape: ShapeSingle, wantList: []Organization{{Alias: "acme"}},
		},
		{
			name: "single with two orgs writes a list", orgs: sampleOrgs(), shape: ShapeSingle,
			wantJSON: `["acme","globex"]`, wantShape: ShapeList,
			wantList: []Organization{{Alias: "acme"}, {Alias: "globex"}},
		},
		{
			name: "absent writes the map", orgs: sampleOrgs(), shape: ShapeAbsent,
			wantJSON: `{"acme":{"id":"u1"},"globex":{"id":"u2"}}`, wantShape: ShapeMap,
			wantList: []Organization{{Alias: "acme", ID: "u1"}, {Alias: "globex", ID: "u2"}},
		},
		{
			name: "empty_object writes the map", orgs: one, shape: ShapeEmptyObject,
			wantJSON: `{"acme":{"id":"u1"}}`, wantShape: ShapeMap, wantList: []Organization{{Alias: "acme", ID: "u1"}},
		},
		{
			name: "unknown shape writes the map", orgs: one, shape: Shape(99),
			wantJSON: `{"acme":{"id":"u1"}}`, wantShape: ShapeMap, wantList: []Organization{{Alias: "acme", ID: "u1"}},
		},
		{
			name: "no orgs as list", orgs: none, shape: ShapeList,
			wantJSON: `[]`, wantShape: ShapeList, wantList: []Organization{},
		},
		{
			name: "no orgs as map is the empty object", orgs: none, shape: ShapeMap,
			wantJSON: `{}`, wantShape: ShapeEmptyObject,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.orgs.Encode(tt.shape)
			assert.JSONEq(t, tt.wantJSON, string(got))
			assert.Equal(t, tt.wantJSON, string(got), "encoding is deterministic")

			back, err := ParseOrganizations(got)
			require.NoError(t, err)
			assert.Equal(t, tt.wantShape, back.Shape)
			assert.Equal(t, tt.wantList, back.List)
		})
	}
}

func TestOrganizationsEncodeRoundTripsOwnShape(t *testing.T) {
	// What was parsed and is written back in its own shape reads back equal.
	for _, claim := range []string{
		`["acme","globex"]`,
		`{"acme":{"id":"u1"},"globex":{"id":"u2"}}`,
		`{"acme":{"id":"u1","tier":["gold"]}}`,
		`"acme"`,
	} {
		t.Run(claim, func(t *testing.T) {
			orgs, err := ParseOrganizations(raw(claim))
			require.NoError(t, err)
			back, err := ParseOrganizations(orgs.Encode(orgs.Shape))
			require.NoError(t, err)
			assert.Equal(t, orgs, back)
			assert.True(t, orgs.Equal(back))
		})
	}
}

func TestShapeString(t *testing.T) {
	want := map[Shape]string{
		ShapeAbsent: "absent", ShapeList: "list", ShapeMap: "map", ShapeMapAttributes: "map_attributes",
		ShapeSingle: "single", ShapeEmptyObject: "empty_object",
	}
	for s, name := range want {
		t.Run(name, func(t *testing.T) { assert.Equal(t, name, s.String()) })
	}
}

func TestOrganizationsAliasesAndHeaderValue(t *testing.T) {
	tests := []struct {
		name        string
		orgs        Organizations
		wantAliases []string
		wantHeader  string
	}{
		{name: "two", orgs: sampleOrgs(), wantAliases: []string{"acme", "globex"}, wantHeader: "acme,globex"},
		{name: "one", orgs: Organizations{List: []Organization{{Alias: "acme"}}}, wantAliases: []string{"acme"}, wantHeader: "acme"},
		{name: "none", orgs: Organizations{}, wantAliases: []string{}, wantHeader: ""},
		{
			name:        "order kept",
			orgs:        Organizations{List: []Organization{{Alias: "zeta"}, {Alias: "alpha"}}},
			wantAliases: []string{"zeta", "alpha"}, wantHeader: "zeta,alpha",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.wantAliases, tt.orgs.Aliases())
			assert.Equal(t, tt.wantHeader, tt.orgs.HeaderValue())
		})
	}
}

func TestOrganizationsEqual(t *testing.T) {
	base := sampleOrgs()
	tests := []struct {
		name  string
		other Organizations
		want  bool
	}{
		{name: "same", other: sampleOrgs(), want: true},
		{name: "other order and shape", other: Organizations{Shape: ShapeList, List: []Organization{base.List[1], base.List[0]}}, want: true},
		{name: "one fewer", other: Organizations{List: base.List[:1]}, want: false},
		{name: "other alias", other: Organizations{List: []Organization{base.List[0], {Alias: "initech", ID: "u2"}}}, want: false},
		{name: "other id", other: Organizations{List: []Organization{base.List[0], {Alias: "globex", ID: "u3"}}}, want: false},
		{name: "id missing", other: Organizations{List: []Organization{base.List[0], {Alias: "globex"}}}, want: false},
		{
			name: "other attribute value",
			other: Organizations{List: []Organization{
				{Alias: "acme", ID: "u1", Attributes: map[string][]string{"tier": {"silver"}}}, base.List[1],
			}},
			want: false,
		},
		{
			name:  "attribute missing",
			other: Organizations{List: []Organization{{Alias: "acme", ID: "u1"}, base.List[1]}},
			want:  false,
		},
		{name: "empty", other: Organizations{}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, base.Equal(tt.other))
			assert.Equal(t, tt.want, tt.other.Equal(base), "Equal is symmetric")
		})
	}
	t.Run("both empty", func(t *testing.T) {
		assert.True(t, Organizations{Shape: ShapeAbsent}.Equal(Organizations{Shape: ShapeEmptyObject}))
	})
}

func TestOrganizationsDiff(t *testing.T) {
	list := func(aliases ...string) Organizations {
		o := Organizations{Shape: ShapeList}
		for _, a := range aliases {
			o.List = append(o.List, Organization{Alias: a})
		}
		return o
	}
	tests := []struct {
		name        string
		now, before Organizations
		added       []string
		removed     []string
	}{
		{name: "same", now: list("acme", "globex"), before: list("globex", "acme")},
		{name: "joined one", now: list("acme", "globex"), before: list("acme"), added: []string{"globex"}},
		{name: "left one", now: list("acme"), before: list("acme", "globex"), removed: []string{"globex"}},
		{name: "swapped", now: list("initech"), before: list("acme"), added: []string{"initech"}, removed: []string{"acme"}},
		{name: "from nothing", now: list("acme", "globex"), before: list(), added: []string{"acme", "globex"}},
		{name: "to nothing", now: list(), before: list("acme", "globex"), removed: []string{"acme", "globex"}},
		{name: "ids do not matter", now: sampleOrgs(), before: list("acme", "globex")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			added, removed := tt.now.Diff(tt.before)
			assert.Equal(t, tt.added, added)
			assert.Equal(t, tt.removed, removed)
		})
	}
}
