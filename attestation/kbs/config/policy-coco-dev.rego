# cocoon-kbs resource policy for coco-dev (no TEE): releases resources to any guest
# that passed attestation, INCLUDING sample (unsigned) evidence. Never use it where
# real secrets live: anyone who can reach the KBS can produce sample evidence.
#
# input: the attestation token claims (EAR), e.g.
#   input.submods.cpu0["ear.veraison.annotated-evidence"].sample
# data:  {"plugin": "resource", "resource-path": [repo, type, tag], "query": {}}
package policy

default allow := false

allow if {
	data.plugin == "resource"
	count(data["resource-path"]) == 3
	input.submods.cpu0["ear.status"] != "contraindicated"
}
