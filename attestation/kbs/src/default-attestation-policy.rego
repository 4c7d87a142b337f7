# cocoon-kbs built-in attestation policy: policy id "default" until an admin posts one.
#
# Evaluated once per /attest, after the evidence verified and matched the configured
# reference values (a mismatch has already failed the attestation). It grades what was
# verified; it cannot make unverified evidence acceptable.
#
# input: the verified claims, shaped like the token's annotated evidence:
#   input.tdx | input.snp | input.sample   TEE claims (tdx/snp: every parsed report
#                                          field plus tcb_status, debug, advisory_ids;
#                                          sample: svn, report_data)
#   input.report_data, input.init_data, input.init_data_claims, input.runtime_data_claims
# data.reference  the configured reference values, {key: [hex, ...]}
# data.appraisal  the reference-value comparison, {"matched": [key], "unchecked": [key]}
#
# output: data.policy.trust_claims, AR4SI trustworthiness claims -> integers. The worst
# tier is the token's ear.status: 2..31 affirming, 32..95 warning (token issued);
# 96.. contraindicated, -1..1 none (attestation refused).
package policy

# The hardware TEE that produced the evidence; undefined for sample evidence.
tee := t if {
	some t in ["tdx", "snp"]
	input[t]
}

tee_claims := input[tee]

# TCB levels the verifier reports for a platform without known vulnerabilities.
up_to_date := {"UpToDate", "VekMatchesReport"}

tcb_up_to_date if tee_claims.tcb_status in up_to_date

# hardware: the report's signature chain verified, so the TEE is genuine (2); a TCB
# level that is not up to date is genuine but has known vulnerabilities (32). Sample
# evidence proves nothing about hardware: no claim (0).
default hardware := 0

hardware := 2 if {
	tee
	tcb_up_to_date
}

hardware := 32 if {
	tee
	not tcb_up_to_date
}

# executables: every reference measurement that applies to this TEE was configured
# and matched (2); otherwise the boot chain is not recognized (33).
default executables := 33

executables := 2 if {
	tee
	count(data.appraisal.unchecked) == 0
}

# configuration: not debuggable (2); debuggable, accepted only with allow_debug, is a
# configuration with known weaknesses (32); unknown for sample evidence (36).
default configuration := 36

configuration := 2 if tee_claims.debug == false

configuration := 32 if tee_claims.debug == true

# runtime-opaque: TDX and SNP guest memory is encrypted (2); no claim for sample.
default runtime_opaque := 0

runtime_opaque := 2 if tee

trust_claims := {
	"hardware": hardware,
	"executables": executables,
	"configuration": configuration,
	"runtime-opaque": runtime_opaque,
}
