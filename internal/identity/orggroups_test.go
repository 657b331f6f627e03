package identity

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The organization claim with Keycloak 26.7.3's organization-group
// membership mapper, as logins showed it for each setting of the
// organization membership mapper: every form becomes an object, groups are
// written for every organization (an empty list when none), and they replace
// an attribute of the same name.
func TestEncodeWithOrganizationGroups(t *testing.T) {
	orgs := Organizations{List: []Organization{
		{Alias: "acme", ID: "id-acme", Attributes: map[string][]string{"tier": {"gold"}, "groups": {"shadowed"}},
			Groups: []string{"/engineering/backend", "/engineering"}},
		{Alias: "globex", ID: "id-globex", Groups: []string{}},
	}}
	for shape, want := range map[Shape]string{
		ShapeList:   `{"acme":{"groups":["/engineering/backend","/engineering"]},"globex":{"groups":[]}}`,
		ShapeSingle: `{"acme":{"groups":["/engineering/backend","/engineering"]},"globex":{"groups":[]}}`,
		ShapeMap:    `{"acme":{"id":"id-acme","groups":["/engineering/backend","/engineering"]},"globex":{"id":"id-globex","groups":[]}}`,
		ShapeMapAttributes: `{"acme":{"id":"id-acme","tier":["gold"],"groups":["/engineering/backend","/engineering"]},` +
			`"globex":{"id":"id-globex","groups":[]}}`,
	} {
		assert.JSONEq(t, want, string(orgs.Encode(shape)), shape.String())
	}

	// Without groups (nil), nothing changes.
	plain := Organizations{List: []Organization{{Alias: "acme", ID: "id-acme"}}}
	assert.JSONEq(t, `["acme"]`, string(plain.Encode(ShapeList)))
	assert.JSONEq(t, `"acme"`, string(plain.Encode(ShapeSingle)))
	assert.JSONEq(t, `{"acme":{"id":"id-acme"}}`, string(plain.Encode(ShapeMap)))
}
