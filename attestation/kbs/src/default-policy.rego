# cocoon-kbs built-in resource policy: resources are released only to guests whose
# evidence came from a TEE. Sample (no-TEE) evidence is refused even when the
# attestation itself was accepted (allow_sample = true).
package policy

default allow := false

allow if {
	data.plugin == "resource"
	input.submods.cpu0["ear.status"] != "contraindicated"
	not input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
