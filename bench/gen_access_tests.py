#!/usr/bin/env python3
"""Access tests for the synthetic corpus of gen_corpus.py (standard library only).

  gen_access_tests.py --objects N --assertions M --out DIR [--seed S] [--per-file K]

  --objects N     the corpus's size, as given to gen_corpus.py
  --seed S        the corpus's seed, as given to gen_corpus.py (default 1)
  --assertions M  how many assertions to write (default 1000)
  --out DIR       the folder of test files (its tests-*.yaml are replaced)
  --per-file K    assertions per file (default 100)

The corpus is rebuilt in memory with gen_corpus.py's own generator (the same
arguments give the same objects) and each answer is computed here from
DESIGN.md's "What access means", read literally, so every assertion holds:
`accord test DIR --source CORPUS` exits 0, and any other exit is a
disagreement between accord and this model. The mix: 40 % `can` (a user,
contact or slug and a permission it holds), 30 % `cannot`, 20 % exact holder
sets (`exactly`: every holder, a few hundred per permission at 100k objects)
and 10 % partial ones (`include`: 5 of them).
The last line printed is `wrote M assertions: … under DIR`.
"""
import argparse
import glob
import json
import os
import random
import sys
from collections import defaultdict

sys.dont_write_bytecode = True  # leave no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_corpus import Corpus  # noqa: E402

INCLUDED = 5


def role_matches(pattern, role):
    pattern, role = pattern.split(":"), role.split(":")
    return len(pattern) == len(role) and all(p in ("*", r) for p, r in zip(pattern, role))


def holder_of(user, contact):
    if user is not None:
        return f"user:{user}"
    if contact == "*":
        return "contact:*"
    local, _, domain = contact.rpartition("@")
    return f"contact:{local}@{domain.lower()}"


class Model:
    """Who holds what, by app, from the corpus's objects."""

    def __init__(self, corpus):
        self.grants = defaultdict(list)          # app -> [(role, holder)]
        for e in corpus.enrollments:
            self.grants[e["app"]].append((e["role"], holder_of(e["userId"], e["contactId"])))
        for org in corpus.orgs:
            for m in org["members"]:
                role = f"user-svc:org:{org['slug']}:{m['role']}"
                self.grants[org["app"]].append((role, holder_of(m.get("userId"), m.get("contactId"))))
        self.permits = defaultdict(list)         # (app, permission) -> [permit]
        for p in corpus.permits:
            self.permits[(p["app"], p["permissionId"])].append(p)
        self.by_role = {}                        # app -> role -> {holder}
        for app, grants in self.grants.items():
            roles = defaultdict(set)
            for role, holder in grants:
                roles[role].add(holder)
            self.by_role[app] = roles

    def holders(self, app, permission):
        held = set()
        for permit in self.permits.get((app, permission), ()):
            held.update(f"slug:{s}" for s in permit["slugs"])
            for pattern in permit["roles"]:
                for role, holders in self.by_role.get(app, {}).items():
                    if role_matches(pattern, role):
                        held |= holders
        return held

    def covers(self, holder, subject):
        """Whether a holder covers a one-identity subject (`user:…`, `contact:…`, `slug:…`)."""
        if holder == subject:
            return True
        if not subject.startswith("contact:"):
            return False
        domain = subject.rpartition("@")[2].lower()
        return holder == "contact:*" or holder == f"contact:*@{domain}"

    def can(self, subject, app, permission):
        return any(self.covers(h, subject) for h in self.holders(app, permission))


def flow(values):
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--assertions", type=int, default=1000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--per-file", type=int, default=100)
    args = parser.parse_args()
    if args.assertions < 1 or args.per_file < 1:
        sys.exit("gen_access_tests.py: --assertions and --per-file must be at least 1")

    corpus = Corpus(args.objects, args.seed)
    model = Model(corpus)
    rng = random.Random(f"access-tests/{args.seed}/{args.assertions}")
    permissions = sorted(model.permits)
    by_app = defaultdict(list)
    for app, permission in permissions:
        by_app[app].append(permission)
    people = [(e["app"], holder_of(e["userId"], e["contactId"])) for e in corpus.enrollments
              if e["contactId"] not in ("*", "*@example.com")]

    def can():
        app, permission = rng.choice(permissions)
        held = sorted(h for h in model.holders(app, permission) if not h.startswith("contact:*"))
        if not held:
            return None
        subject = rng.choice(held)
        return "can", (f"  - can: {{subject: {json.dumps(subject)}, permission: {json.dumps(permission)}, "
                       f"app: {json.dumps(app)}}}")

    def cannot():
        app, subject = rng.choice(people)
        permission = rng.choice(by_app[app])
        if model.can(subject, app, permission):
            return None
        return "cannot", (f"  - cannot: {{subject: {json.dumps(subject)}, permission: {json.dumps(permission)}, "
                          f"app: {json.dumps(app)}}}")

    def holders(exactly):
        app, permission = rng.choice(permissions)
        held = sorted(model.holders(app, permission))
        if exactly:
            field, listed = "exactly", held
        else:
            field, listed = "include", sorted(rng.sample(held, min(INCLUDED, len(held))))
        return field, (f"  - holders: {{permission: {json.dumps(permission)}, app: {json.dumps(app)}, "
                       f"{field}: {flow(listed)}}}")

    tests, counts = [], defaultdict(int)
    while len(tests) < args.assertions:
        draw = rng.random()
        make = (can if draw < 0.4 else cannot if draw < 0.7
                else (lambda: holders(True)) if draw < 0.9 else (lambda: holders(False)))
        # Draw again until this kind of assertion is found: the mix stays as documented.
        for _ in range(10_000):
            made = make()
            if made:
                kind, line = made
                tests.append(line)
                counts[kind] += 1
                break
        else:
            sys.exit("gen_access_tests.py: this corpus has too few grants for the mix of assertions")

    os.makedirs(args.out, exist_ok=True)
    for old in glob.glob(os.path.join(args.out, "tests-*.yaml")):
        os.remove(old)
    for start in range(0, len(tests), args.per_file):
        name = os.path.join(args.out, f"tests-{start // args.per_file:04d}.yaml")
        with open(name, "w", encoding="utf-8") as out:
            out.write(f"# {args.objects} objects, seed {args.seed}: generated by bench/gen_access_tests.py\n")
            out.write("tests:\n" + "\n".join(tests[start:start + args.per_file]) + "\n")
    print(f"wrote {len(tests)} assertions: {counts['can']} can, {counts['cannot']} cannot, "
          f"{counts['exactly']} exact and {counts['include']} partial holder sets under {args.out}")


if __name__ == "__main__":
    main()
