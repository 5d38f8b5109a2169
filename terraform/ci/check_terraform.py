#!/usr/bin/env python3
"""Offline checks of terraform/ without providers (run by .ci/terraform-check).

Parses every .tf file with python-hcl2 and checks, for each module and
example directory:

- every variable has a description and a type; variables that carry secret
  material are `sensitive` and default to null; validation conditions refer
  to their own variable only;
- every output has a description;
- versions.tf pins `required_version` and every provider with `~>`; every
  provider a resource or data source uses is declared; reusable modules
  configure no provider;
- every `var.`, `local.`, `module.`, `data.` and resource reference names
  something declared (module outputs included);
- every module call with a local source points at an existing module, passes
  only variables that module declares, and every variable it requires;
- templatefile() templates exist, get every variable they use, render with
  sample values and pass `bash -n`;
- the chart values the quicmq-helm module sets exist in the chart's
  values.schema.json;
- no hard-coded secrets (access keys, private keys, hex keys, passwords);
- each module's README documents every input and output.

usage: check_terraform.py TERRAFORM_DIR
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from typing import Any, Callable, Iterator

import hcl2

META_ARGS = {"source", "version", "providers", "count", "for_each", "depends_on"}
SECRET_NAME = re.compile(r"(^|_)(keys?|secrets?|passwords?|tokens?|credentials?)$")
NOT_SECRET_SUFFIX = re.compile(r"_(arn|name|id|ids|names|path|enabled)$")
SECRET_PATTERNS = [
    (re.compile(r"AKIA[0-9A-Z]{16}"), "an AWS access key ID"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a PEM private key"),
    (re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32,}(?![0-9a-fA-F])"), "a long hex string (a key?)"),
    (re.compile(r"(?i)(password|secret_key|aws_secret_access_key)\s*=\s*\"[^\"$]+\""), "a literal password/secret"),
]

PASSED = 0
FAILED: list[str] = []


def check(name: str, fn: Callable[[], None]) -> None:
    global PASSED
    try:
        fn()
        PASSED += 1
        print(f"ok    {name}")
    except Exception as exc:  # noqa: BLE001 - every failure is reported
        FAILED.append(name)
        print(f"FAIL  {name}: {exc or traceback.format_exc(limit=2)}")


class CheckError(Exception):
    pass


def expect(cond: Any, message: str) -> None:
    if not cond:
        raise CheckError(message)


def unq(s: Any) -> Any:
    """python-hcl2 keeps the quotes of labels and literal strings."""
    if isinstance(s, str) and len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        return s[1:-1]
    return s


def blocks(doc: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, body) of every top-level block of a kind with one label."""
    for entry in doc.get(kind, []):
        for label, body in entry.items():
            if not label.startswith("__"):
                yield unq(label), body


def two_label_blocks(doc: dict[str, Any], kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for entry in doc.get(kind, []):
        for type_label, inner in entry.items():
            if type_label.startswith("__"):
                continue
            for name_label, body in inner.items():
                if not name_label.startswith("__"):
                    yield unq(type_label), unq(name_label), body


def strings(value: Any) -> Iterator[str]:
    """Every string inside a parsed value (expressions included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if not k.startswith("__"):
                yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def expressions(value: Any) -> Iterator[str]:
    for s in strings(value):
        if "${" in s:
            yield s


class TfDir:
    """One Terraform configuration directory (a module or an example)."""

    def __init__(self, path: str):
        self.path = path
        self.files: dict[str, dict[str, Any]] = {}
        self.raw: dict[str, str] = {}
        for name in sorted(os.listdir(path)):
            if name.endswith(".tf"):
                full = os.path.join(path, name)
                with open(full) as f:
                    self.raw[name] = f.read()
                with open(full) as f:
                    self.files[name] = hcl2.load(f)

    def all(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for doc in self.files.values():
            yield from blocks(doc, kind)

    @property
    def variables(self) -> dict[str, dict[str, Any]]:
        return dict(self.all("variable"))

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return dict(self.all("output"))

    @property
    def modules(self) -> dict[str, dict[str, Any]]:
        return dict(self.all("module"))

    @property
    def locals(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for doc in self.files.values():
            for entry in doc.get("locals", []):
                out.update({k: v for k, v in entry.items() if not k.startswith("__")})
        return out

    def resources(self, kind: str = "resource") -> set[tuple[str, str]]:
        return {(t, n) for doc in self.files.values() for t, n, _ in two_label_blocks(doc, kind)}

    def terraform_block(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for doc in self.files.values():
            for entry in doc.get("terraform", []):
                merged.update(entry)
        return merged

    def required_providers(self) -> dict[str, Any]:
        rp: dict[str, Any] = {}
        for entry in self.terraform_block().get("required_providers", []):
            rp.update({k: v for k, v in entry.items() if not k.startswith("__")})
        return rp


def var_refs(text: str) -> set[str]:
    return set(re.findall(r"\bvar\.([A-Za-z0-9_-]+)", text))


def check_dir(d: TfDir, root: str, is_module: bool, chart_schema: dict[str, Any] | None) -> None:
    rel = os.path.relpath(d.path, root)
    variables = d.variables
    outputs = d.outputs

    def parsed() -> None:
        expect(d.files, "no .tf files")

    def variable_docs() -> None:
        for name, body in variables.items():
            desc = unq(body.get("description", ""))
            expect(isinstance(desc, str) and len(desc) >= 10, f"variable {name}: no description")
            expect("type" in body, f"variable {name}: no type")

    def variable_secrets() -> None:
        for name, body in variables.items():
            if SECRET_NAME.search(name) and not NOT_SECRET_SUFFIX.search(name) and name != "key_name":
                expect(body.get("sensitive") is True, f"variable {name} carries secrets but is not sensitive")
                expect(body.get("default", None) in (None, "null"), f"variable {name}: a secret with a default")

    def validations() -> None:
        for name, body in variables.items():
            for v in body.get("validation", []):
                refs = var_refs(v["condition"])
                expect(refs == {name}, f"variable {name}: validation refers to {sorted(refs)}")
                expect(unq(v.get("error_message", "")), f"variable {name}: validation without a message")

    def output_docs() -> None:
        expect(outputs or not is_module, "a module without outputs")
        for name, body in outputs.items():
            desc = unq(body.get("description", ""))
            expect(isinstance(desc, str) and len(desc) >= 10, f"output {name}: no description")

    def versions() -> None:
        expect("versions.tf" in d.files, "no versions.tf")
        tf = d.terraform_block()
        expect(unq(tf.get("required_version", "")).startswith(">="), "required_version missing")
        rp = d.required_providers()
        expect(rp, "no required_providers")
        for name, spec in rp.items():
            expect(unq(spec.get("source", "")).startswith("hashicorp/"), f"provider {name}: no source")
            version = unq(spec.get("version", ""))
            expect(re.fullmatch(r"~> \d+\.\d+(\.\d+)?", version), f"provider {name}: version {version!r} is not pinned with ~>")

    def providers_declared() -> None:
        rp = d.required_providers()
        used = {t.split("_", 1)[0] for t, _ in d.resources() | d.resources("data")}
        for doc in d.files.values():
            used |= {label for label, _ in blocks(doc, "provider")}
        missing = used - set(rp)
        expect(not missing, f"providers used but not in required_providers: {sorted(missing)}")
        if is_module:
            configured = [label for doc in d.files.values() for label, _ in blocks(doc, "provider")]
            expect(not configured, f"a reusable module configures providers {configured}")

    def references() -> None:
        local_names = set(d.locals)
        resources = d.resources()
        data_sources = d.resources("data")
        modules = d.modules
        problems: list[str] = []
        for doc in d.files.values():
            for expr in expressions(doc):
                for v in var_refs(expr):
                    if v not in variables:
                        problems.append(f"var.{v}")
                for l in re.findall(r"(?<![\w./-])local\.([A-Za-z0-9_]+)", expr):
                    if l not in local_names:
                        problems.append(f"local.{l}")
                for t, n in re.findall(r"(?<![\w./-])data\.([a-z0-9_]+)\.([A-Za-z0-9_]+)", expr):
                    if (t, n) not in data_sources:
                        problems.append(f"data.{t}.{n}")
                for t, n in re.findall(r"(?<![.\w])((?:aws|helm|kubernetes)_[a-z0-9_]+)\.([A-Za-z0-9_]+)", expr):
                    if (t, n) not in resources:
                        problems.append(f"{t}.{n}")
                for m, o in re.findall(r"\bmodule\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)", expr):
                    if m not in modules:
                        problems.append(f"module.{m}")
                        continue
                    target = module_dir(d, modules[m])
                    if target and o not in TfDir(target).outputs:
                        problems.append(f"module.{m}.{o} (no such output)")
        expect(not problems, f"undeclared references: {sorted(set(problems))}")

    def module_calls() -> None:
        for name, body in d.modules.items():
            target = module_dir(d, body)
            expect(target, f"module {name}: source {unq(body.get('source'))} is not a local directory")
            expect(os.path.isdir(target), f"module {name}: {target} does not exist")
            callee = TfDir(target)
            declared = callee.variables
            passed = {k for k in body if k not in META_ARGS and not k.startswith("__")}
            unknown = passed - set(declared)
            expect(not unknown, f"module {name}: passes undeclared variables {sorted(unknown)}")
            required = {k for k, v in declared.items() if "default" not in v}
            missing = required - passed
            expect(not missing, f"module {name}: misses required variables {sorted(missing)}")
            for provider_key in body.get("providers", {}):
                expect(provider_key.split(".")[0] in callee.required_providers(),
                       f"module {name}: passes provider {provider_key} the module does not require")

    def templates() -> None:
        for fname, text in d.raw.items():
            for call in re.finditer(r'templatefile\(\s*"\$\{path\.module\}/([^"]+)"\s*,\s*', text):
                tpath = os.path.join(d.path, call.group(1))
                expect(os.path.isfile(tpath), f"{fname}: template {call.group(1)} missing")
                arg = text[call.end():]
                keys = template_arg_keys(arg, d.locals)
                with open(tpath) as f:
                    template = f.read()
                expect("%{" not in template, f"{call.group(1)}: template directives are not checked here")
                used = template_vars(template)
                missing = used - keys
                expect(not missing, f"{call.group(1)}: variables not passed: {sorted(missing)}")
        render_user_data(d)

    def secrets() -> None:
        findings = []
        for name in sorted(os.listdir(d.path)):
            if not re.search(r"\.(tf|tftpl|tfvars|example|sh)$", name):
                continue
            findings += scan_secrets(os.path.join(d.path, name))
        tdir = os.path.join(d.path, "templates")
        if os.path.isdir(tdir):
            for name in sorted(os.listdir(tdir)):
                findings += scan_secrets(os.path.join(tdir, name))
        expect(not findings, "; ".join(findings))

    def readme() -> None:
        path = os.path.join(d.path, "README.md")
        expect(os.path.isfile(path), "no README.md")
        with open(path) as f:
            text = f.read()
        if is_module:
            expect("## Inputs" in text and "## Outputs" in text, "README lacks Inputs/Outputs sections")
            for kind, names in (("input", variables), ("output", outputs)):
                for n in names:
                    expect(re.search(rf"^\|\s*`{re.escape(n)}`\s*\|", text, re.M),
                           f"README does not document {kind} {n}")

    checks = [("parses", parsed), ("variables: description and type", variable_docs),
              ("variables: secrets are sensitive", variable_secrets),
              ("variables: validations", validations), ("outputs: description", output_docs),
              ("versions.tf pins", versions), ("providers declared", providers_declared),
              ("references resolve", references), ("module calls", module_calls),
              ("templates", templates), ("no hard-coded secrets", secrets), ("README", readme)]
    if chart_schema is not None and os.path.basename(d.path) == "quicmq-helm":
        checks.append(("chart values exist in values.schema.json",
                       lambda: helm_values_in_schema(d, chart_schema)))
    for label, fn in checks:
        check(f"{rel}: {label}", fn)


def module_dir(d: TfDir, body: dict[str, Any]) -> str | None:
    source = unq(body.get("source", ""))
    if not source.startswith(("./", "../")):
        return None
    return os.path.normpath(os.path.join(d.path, source))


def template_vars(template: str) -> set[str]:
    """Root identifiers of every ${...} interpolation ($${ is a literal)."""
    names = set()
    for m in re.finditer(r"(?<!\$)\$\{\s*([A-Za-z_][A-Za-z0-9_]*)", template):
        names.add(m.group(1))
    return names


def template_arg_keys(arg: str, local_values: dict[str, Any]) -> set[str]:
    """Keys of the object passed to templatefile (a literal or local.NAME)."""
    m = re.match(r"local\.([A-Za-z0-9_]+)", arg)
    if m:
        value = local_values.get(m.group(1))
        if isinstance(value, dict):
            return set(value)
        raise CheckError(f"templatefile argument local.{m.group(1)} is not an object literal")
    if arg.startswith("merge("):
        raise CheckError("templatefile argument: use an object literal or local.NAME")
    expect(arg.startswith("{"), "templatefile argument is not an object")
    depth = 0
    keys = set()
    line_start = True
    i = 0
    while i < len(arg):
        c = arg[i]
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
            if depth == 0:
                break
        elif c == '"':
            j = arg.index('"', i + 1)
            i = j
        elif depth == 1 and line_start:
            km = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", arg[i:])
            if km:
                keys.add(km.group(1))
        line_start = c == "\n"
        i += 1
    return keys


SAMPLE = {
    "name": "quicmq", "region": "eu-west-1", "binaries_source": "s3://bucket/quicmq.tar.gz",
    "binaries_sha256": "", "keys_arn": "arn:aws:secretsmanager:eu-west-1:1:secret:k",
    "log_filter": "info", "cluster_id": "quicmq", "voters": "3",
    "join": "node-1.quicmq.quicmq.internal:7000", "seeds": "node-1.quicmq.quicmq.internal:7000",
    "zone_id": "Z123", "zone_name": "quicmq.quicmq.internal", "tls_arn": "", "passwd_arn": "arn:aws:secretsmanager:eu-west-1:1:secret:p",
    "anonymous": "false",
    "cluster_tls": "arn:aws:secretsmanager:eu-west-1:1:secret:quicmq/cluster-tls-node",
    "admin_token": "arn:aws:secretsmanager:eu-west-1:1:secret:quicmq/admin-token",
    "extra_config": "max_queued_messages = 100000",
}


_WORST_NAME = "quicmq-production-eu-w1x"
_WORST_ZONE = f"{_WORST_NAME}.quicmq.internal"
_WORST_ARN = "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:quicmq/cluster-tls-router-AbCdEf"
WORST_CASE = {
    "name": _WORST_NAME, "cluster_id": _WORST_NAME, "zone_name": _WORST_ZONE, "region": "us-gov-west-1",
    "join": ",".join(f"node-{i}.{_WORST_ZONE}:7000" for i in range(1, 65)),
    "seeds": ",".join(f"node-{i}.{_WORST_ZONE}:7000" for i in range(1, 65)),
    "binaries_source": "s3://my-artifacts/quicmq/0.1.0/quicmq-0.1.0-x86_64-linux.tar.gz",
    "binaries_sha256": "0" * 64,
    "keys_arn": _WORST_ARN, "tls_arn": _WORST_ARN, "passwd_arn": _WORST_ARN, "cluster_tls": _WORST_ARN,
    "admin_token": _WORST_ARN,
}


def render(template: str, values: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key in values:
            return values[key]
        if key.startswith("port_"):
            return "14567"
        raise CheckError(f"no sample value for ${{{key}}}")

    out = re.sub(r"(?<!\$)\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}", sub, template)
    return out.replace("$${", "${")


def render_user_data(d: TfDir) -> None:
    tdir = os.path.join(d.path, "templates")
    if not os.path.isdir(tdir):
        return
    common_path = os.path.join(tdir, "common.sh.tftpl")
    values = dict(SAMPLE)
    if os.path.isfile(common_path):
        with open(common_path) as f:
            values["common"] = render(f.read(), SAMPLE)
    common_text = ""
    if os.path.isfile(common_path):
        with open(common_path) as f:
            common_text = f.read()
    for name in sorted(os.listdir(tdir)):
        if not name.endswith(".sh.tftpl") or name == "common.sh.tftpl":
            continue
        with open(os.path.join(tdir, name)) as f:
            template = f.read()
        script = render(template, values)
        expect(script.startswith("#!/bin/bash\n"), f"{name}: rendered user data must start with #!/bin/bash")
        # The module passes user data gzipped (base64gzip; cloud-init
        # unpacks it): EC2's 16 KiB limit applies to the compressed script.
        # Compressed here at the default level, as Terraform's Go gzip does.
        expect(len(gzip.compress(script.encode())) < 16384,
               f"{name}: rendered user data is over EC2's 16 KiB limit, gzipped")
        # The largest the module allows: 64 node slots (node_count), every
        # one in the join list and the seeds, a 24-character name.
        worst = dict(values, **WORST_CASE)
        worst["common"] = render(common_text, worst) if common_text else ""
        size = len(gzip.compress(render(template, worst).encode()))
        expect(size < 16384,
               f"{name}: user data for 64 nodes with join_all_peers is {size} bytes gzipped, over EC2's 16 KiB")
        with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as tmp:
            tmp.write(script)
        try:
            proc = subprocess.run(["bash", "-n", tmp.name], capture_output=True, text=True)
            expect(proc.returncode == 0, f"{name}: bash -n: {proc.stderr.strip()}")
            if shutil.which("shellcheck"):  # optional: used where installed
                proc = subprocess.run(["shellcheck", "-s", "bash", "-S", "warning", "-f", "gcc", tmp.name],
                                      capture_output=True, text=True)
                expect(proc.returncode == 0, f"{name}: shellcheck: {proc.stdout.strip()}")
        finally:
            os.unlink(tmp.name)
        for unit in re.findall(r"<<'UNIT'\n(.*?)\nUNIT\n", script, re.S):
            sections = re.findall(r"^\[(\w+)\]$", unit, re.M)
            expect(sections == ["Unit", "Service", "Install"], f"{name}: unit sections {sections}")
            expect(re.search(r"^ExecStart=/usr/local/bin/quicmq-(node|router) --config /etc/quicmq/", unit, re.M),
                   f"{name}: unit ExecStart")
            expect(re.search(r"^User=quicmq$", unit, re.M), f"{name}: unit must not run as root")


def scan_secrets(path: str) -> list[str]:
    findings = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            for pattern, what in SECRET_PATTERNS:
                if pattern.search(line):
                    findings.append(f"{os.path.basename(path)}:{lineno}: {what}")
    return findings


def helm_values_in_schema(d: TfDir, schema: dict[str, Any]) -> None:
    values = d.locals.get("values")
    expect(isinstance(values, dict), "local.values is not an object literal")
    problems: list[str] = []

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if not isinstance(value, dict):
            return
        props = node.get("properties", {})
        for key, sub in value.items():
            if key.startswith("__"):
                continue
            if key not in props:
                if node.get("additionalProperties") is False:
                    problems.append(f"{path}{key}")
                continue
            walk(sub, props[key], f"{path}{key}.")
            if isinstance(sub, str) and "${" in sub:
                # merge()/for expressions: check the keys of their literal objects.
                for inner in re.findall(r"\b([A-Za-z][A-Za-z0-9]*)\s*=(?!=)", sub):
                    if inner in ("k", "v"):
                        continue
                    if inner not in props[key].get("properties", {}) and \
                            props[key].get("additionalProperties") is False and \
                            not any(inner in p.get("properties", {}) for p in props[key].get("properties", {}).values()):
                        problems.append(f"{path}{key}.{inner}")

    walk(values, schema, "")
    expect(not problems, f"keys not in the chart's values.schema.json: {sorted(set(problems))}")


def main() -> int:
    root = os.path.abspath(sys.argv[1])
    schema_path = os.path.join(root, "..", "charts", "quicmq", "values.schema.json")
    chart_schema = None
    if os.path.isfile(schema_path):
        with open(schema_path) as f:
            chart_schema = json.load(f)
    dirs = []
    for group, is_module in (("modules", True), ("examples", False)):
        base = os.path.join(root, group)
        for name in sorted(os.listdir(base)):
            if os.path.isdir(os.path.join(base, name)):
                dirs.append((os.path.join(base, name), is_module))
    check("terraform/ has modules quicmq-aws and quicmq-helm, examples single-region and multi-region",
          lambda: expect({"modules/quicmq-aws", "modules/quicmq-helm", "examples/single-region",
                          "examples/multi-region"} <= {os.path.relpath(p, root) for p, _ in dirs},
                         "missing directories"))
    for path, is_module in dirs:
        try:
            d = TfDir(path)
        except Exception as exc:  # noqa: BLE001
            check(f"{os.path.relpath(path, root)}: parses", lambda exc=exc: (_ for _ in ()).throw(exc))
            continue
        check_dir(d, root, is_module, chart_schema)

    print(f"terraform checks: {PASSED} passed, {len(FAILED)} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
