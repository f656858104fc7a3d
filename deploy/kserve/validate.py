#!/usr/bin/env python3
"""Checks an InferenceService manifest against KServe's schema as its Python SDK encodes it (every
field known, of the right type, down through the Kubernetes types it embeds): an unknown or
misspelt field, a list where an object belongs, a number for a string, fail with its path.

    pip install kserve pyyaml
    python3 deploy/kserve/validate.py deploy/kserve/inferenceservice.yaml
"""
import re
import sys


def resolve(name):
    import kserve.models
    import kubernetes.client.models
    for mod in (kserve.models, kubernetes.client.models):
        if hasattr(mod, name):
            return getattr(mod, name)
    return None


def check(value, type_name, path, errors):
    type_name = type_name.strip()
    if m := re.fullmatch(r"(?:list|List)\[(.+)\]", type_name):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, found {type(value).__name__}")
            return
        for i, v in enumerate(value):
            check(v, m.group(1), f"{path}[{i}]", errors)
        return
    if m := re.fullmatch(r"(?:dict|Dict)\((\w+), (.+)\)", type_name) or re.fullmatch(r"(?:dict|Dict)\[(\w+), (.+)\]",
                                                                                      type_name):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, found {type(value).__name__}")
            return
        for k, v in value.items():
            check(v, m.group(2), f"{path}.{k}", errors)
        return
    simple = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "datetime": str}
    if type_name in simple:
        ok = isinstance(value, simple[type_name]) and not (type_name == "int" and isinstance(value, bool))
        if type_name == "object" or ok:
            return
        errors.append(f"{path}: expected {type_name}, found {value!r}")
        return
    cls = resolve(type_name)
    if cls is None:  # (a type the SDKs leave open, e.g. Quantity strings)
        return
    if type_name.endswith("Quantity") or type_name == "V1IntOrString":
        return
    if not isinstance(value, dict):
        errors.append(f"{path}: expected an object ({type_name}), found {value!r}")
        return
    by_json = {j: a for a, j in cls.attribute_map.items()}
    for k, v in value.items():
        if k not in by_json:
            errors.append(f"{path}.{k}: not a field of {type_name}")
            continue
        check(v, cls.openapi_types[by_json[k]], f"{path}.{k}", errors)


def main():
    import yaml
    import kserve
    doc = yaml.safe_load(open(sys.argv[1]))
    errors = []
    if doc.get("apiVersion") != "serving.kserve.io/v1beta1" or doc.get("kind") != "InferenceService":
        errors.append("apiVersion/kind: expected serving.kserve.io/v1beta1 InferenceService")
    check(doc, "V1beta1InferenceService", "$", errors)
    for e in errors:
        print("error:", e)
    version = getattr(kserve, "__version__", None)
    if not version:
        from importlib.metadata import version as v
        version = v("kserve")
    print(f"{sys.argv[1]}: {'valid' if not errors else f'{len(errors)} error(s)'} against the kserve {version} SDK's models")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
