#!/usr/bin/env python3
"""accord's synthetic corpus: a deterministic tree of organizations, permits and
enrollments for the benchmarks (standard library only).

  gen_corpus.py --objects N --out DIR [--seed S] [--mutate K] [--git] [--csv DIR]

  --objects N   total objects; about 1 % organizations, the rest split between
                permits and enrollments, spread over one app per 5,000 objects
  --out DIR     the tree (its orgs/, apps/ and bundles/ folders are replaced)
  --seed S      another seed, another corpus (default 1); the same arguments always
                write the same bytes
  --mutate K    K permits gain one role (the same K for the same seed): a small commit
  --git         make DIR a Git repository (branch main) and commit the tree
  --csv DIR     also write the rows as CSV (organizations, permits, enrollments), for
                the bulk-load baselines; columns as the baselines' tables have them

Every file shape accord reads is used: typed Organization manifests (orgs/), native
lists of permits and of enrollments per app and service (apps/), and one app bundle
per app whose items inherit its app (bundles/). The last line printed is
`wrote N objects: … under DIR`.
"""
import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys

OBJECTS_PER_APP = 5000
PER_FILE = 2000           # no list file holds more objects than this
BUNDLED_PER_KIND = 3      # permits and enrollments per app bundle

SERVICES = ("payment-svc", "chat-svc", "user-svc", "billing-svc", "project-svc", "media-api",
            "blog-api", "data-svc", "email-svc", "secret-svc", "analytics-api", "tenant-api")
ENTITIES = ("message", "post", "comment", "image", "invoice", "member", "secret", "report", "job")
ACTIONS = ("create", "read", "update", "delete", "publish", "approve", "list", "process")
PERMIT_ROLES = ("admin", "user", "viewer", "processor")
ENROLLED_ROLES = ("admin", "user", "viewer")
MODELS = ("gpt-4o", "gpt-4o-mini", "llama-3.1-70b", "llama-3.1-8b", "mistral-large", "claude-sonnet")


def scalar(value):
    """A YAML scalar: JSON's quoting is valid YAML and never needs thought."""
    return json.dumps(value)


def flow(values):
    return "[" + ", ".join(scalar(v) for v in values) + "]"


class Corpus:
    def __init__(self, objects, seed):
        self.rng = random.Random(seed)
        self.seed = seed
        self.apps = [f"app-{n:04d}.example.com" for n in range(max(1, objects // OBJECTS_PER_APP))]
        n_orgs = max(1, objects // 100)
        n_permits = (objects - n_orgs) // 2
        n_enrollments = objects - n_orgs - n_permits
        self.orgs = [self.organization(n) for n in range(n_orgs)]
        self.permits = [self.permit(n) for n in range(n_permits)]
        self.enrollments = [self.enrollment(n) for n in range(n_enrollments)]

    def app(self, n):
        return self.apps[n % len(self.apps)]

    def organization(self, n):
        rng, slug = self.rng, f"org-{n:06d}"
        members = [{
            "contactId": f"member{m}@{slug}.example.com",
            "role": "user" if m else "admin",
            "tokenLimit": rng.choice((10_000, 50_000, 100_000)),
        } for m in range(rng.randint(3, 12))]
        return {
            "app": self.app(n), "slug": slug, "name": f"Organization {n}",
            "monthlyTokens": rng.choice((100_000, 1_000_000, 10_000_000)),
            "allowedModels": sorted(rng.sample(MODELS, rng.randint(1, 4))),
            "members": members,
        }

    def permit(self, n):
        rng = self.rng
        service = SERVICES[n % len(SERVICES)]
        permit = {
            "app": self.app(n), "id": f"permit-{n:07d}",
            "permissionId": f"{service}:{rng.choice(ENTITIES)}:{rng.choice(ACTIONS)}",
            "roles": [], "slugs": [],
        }
        if rng.random() < 0.7:
            permit["roles"] = sorted({f"{service}:{rng.choice(PERMIT_ROLES)}" for _ in range(rng.randint(1, 3))})
        if not permit["roles"] or rng.random() < 0.5:
            permit["slugs"] = sorted({f"svc-{rng.randint(0, 999):03d}" for _ in range(rng.randint(1, 3))})
        return permit

    def enrollment(self, n):
        rng = self.rng
        enrollment = {
            "app": self.app(n), "id": f"enroll-{n:07d}",
            "role": f"{rng.choice(SERVICES)}:{rng.choice(ENROLLED_ROLES)}",
            "userId": None, "contactId": None,
        }
        draw = rng.random()
        if draw < 0.6:
            enrollment["contactId"] = f"person{n}@example.com"
        elif draw < 0.98:
            enrollment["userId"] = f"usr_{n:08x}"
        else:
            enrollment["contactId"] = rng.choice(("*", "*@example.com"))
        return enrollment

    def mutate(self, count):
        """`count` permits gain a role; which ones depends on the seed and the count only."""
        rng = random.Random(f"mutate/{self.seed}/{count}")
        for n in rng.sample(range(len(self.permits)), min(count, len(self.permits))):
            permit = self.permits[n]
            permit["roles"] = sorted(set(permit["roles"]) | {f"mutated:{self.seed}"})


# ---- YAML ---------------------------------------------------------------------------

def permit_item(permit, with_app):
    lines = [f"- id: {scalar(permit['id'])}", f"  permissionId: {scalar(permit['permissionId'])}"]
    if permit["slugs"]:
        lines.append(f"  slugs: {flow(permit['slugs'])}")
    if permit["roles"]:
        lines.append(f"  roles: {flow(permit['roles'])}")
    if with_app:
        lines.append(f"  app: {scalar(permit['app'])}")
    return lines


def enrollment_item(enrollment, with_app):
    lines = [f"- id: {scalar(enrollment['id'])}", f"  role: {scalar(enrollment['role'])}"]
    for field in ("userId", "contactId"):
        if enrollment[field] is not None:
            lines.append(f"  {field}: {scalar(enrollment[field])}")
    if with_app:
        lines.append(f"  app: {scalar(enrollment['app'])}")
    return lines


def organization_manifest(org):
    lines = [
        "apiVersion: accord.dev/v1alpha1",
        "kind: Organization",
        "metadata:",
        f"  name: {scalar(org['slug'])}",
        "spec:",
        f"  name: {scalar(org['name'])}",
        f"  app: {scalar(org['app'])}",
        "  budget:",
        f"    monthlyTokens: {org['monthlyTokens']}",
        f"  allowedModels: {flow(org['allowedModels'])}",
        "  members:",
    ]
    for member in org["members"]:
        lines += [f"    - contactId: {scalar(member['contactId'])}",
                  f"      role: {scalar(member['role'])}",
                  f"      tokenLimit: {member['tokenLimit']}"]
    return "\n".join(lines) + "\n"


def write_tree(root, corpus):
    for folder in ("orgs", "apps", "bundles"):
        shutil.rmtree(os.path.join(root, folder), ignore_errors=True)

    def write(relative, text):
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)

    for org in corpus.orgs:
        write(f"orgs/{org['slug']}/org.yaml", organization_manifest(org))

    # The first few permits and enrollments of each app go to its bundle, whose
    # items name no app of their own; the rest to lists by app and service.
    bundled = {app: {"permits": [], "enrollments": []} for app in corpus.apps}
    lists = {}
    for kind, items in (("permits", corpus.permits), ("enrollments", corpus.enrollments)):
        for item in items:
            bundle = bundled[item["app"]][kind]
            if len(bundle) < BUNDLED_PER_KIND:
                bundle.append(item)
                continue
            name = (item["permissionId"] if kind == "permits" else item["role"]).split(":")[0]
            lists.setdefault((item["app"], kind, name), []).append(item)
    for app, kinds in bundled.items():
        lines = [f"app: {scalar(app)}", "permits:"]
        for permit in kinds["permits"]:
            lines += ["  " + line for line in permit_item(permit, with_app=False)]
        lines.append("enrollments:")
        for enrollment in kinds["enrollments"]:
            lines += ["  " + line for line in enrollment_item(enrollment, with_app=False)]
        write(f"bundles/{app}.yaml", "\n".join(lines) + "\n")
    for (app, kind, name), items in sorted(lists.items()):
        render = permit_item if kind == "permits" else enrollment_item
        for start in range(0, len(items), PER_FILE):
            part = "" if start == 0 else f"-{start // PER_FILE}"
            lines = [line for item in items[start:start + PER_FILE] for line in render(item, with_app=True)]
            write(f"apps/{app}/{kind}/{name}{part}.yaml", "\n".join(lines) + "\n")


def write_csv(folder, corpus):
    os.makedirs(folder, exist_ok=True)

    def table(name, rows):
        with open(os.path.join(folder, f"{name}.csv"), "w", newline="", encoding="utf-8") as out:
            csv.writer(out).writerows(rows)

    table("organizations", ([o["app"], o["slug"], o["name"], o["monthlyTokens"],
                             json.dumps(o["allowedModels"]), json.dumps(o["members"])]
                            for o in corpus.orgs))
    table("permits", ([p["app"], p["id"], p["permissionId"], json.dumps(p["slugs"]), json.dumps(p["roles"])]
                      for p in corpus.permits))
    table("enrollments", ([e["app"], e["id"], e["role"], e["userId"] or "", e["contactId"] or ""]
                          for e in corpus.enrollments))


def commit(root, message):
    def git(*args):
        subprocess.run(["git", "-C", root, *args], check=True, stdout=subprocess.DEVNULL)

    if not os.path.isdir(os.path.join(root, ".git")):
        git("init", "-q", "-b", "main")
    git("add", "-A")
    git("-c", "user.name=accord bench", "-c", "user.email=bench@accord.invalid",
        "commit", "-q", "--allow-empty", "-m", message)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mutate", type=int, default=0)
    parser.add_argument("--git", action="store_true")
    parser.add_argument("--csv")
    args = parser.parse_args()
    if args.objects < 10:
        sys.exit("gen_corpus.py: --objects must be at least 10")
    corpus = Corpus(args.objects, args.seed)
    if args.mutate:
        corpus.mutate(args.mutate)
    write_tree(args.out, corpus)
    if args.csv:
        write_csv(args.csv, corpus)
    if args.git:
        commit(args.out, f"corpus: {args.objects} objects, seed {args.seed}, {args.mutate} mutated")
    total = len(corpus.orgs) + len(corpus.permits) + len(corpus.enrollments)
    print(f"wrote {total} objects: {len(corpus.orgs)} organizations, {len(corpus.permits)} permits, "
          f"{len(corpus.enrollments)} enrollments in {len(corpus.apps)} apps under {args.out}")


if __name__ == "__main__":
    main()
