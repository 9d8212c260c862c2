/** Pure naming and hashing helpers: known vectors, Azure's rules, determinism. */
import { describe, expect, it } from "vitest";
import { roleAssignmentName } from "../infra/identity";
import { assertAzureName, azureNames, blobFileName, canonicalJson, isoMillis, isoSeconds, NAME_RULES, sha256, slug, uuidV5 } from "../infra/naming";

describe("uuidV5", () => {
  it("matches RFC 4122 test vectors", () => {
    // Python: uuid.uuid5(uuid.NAMESPACE_DNS, "www.example.com")
    expect(uuidV5("www.example.com", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")).toBe("2ed6657d-e927-568b-95e1-2665a8aea6a2");
    // Python: uuid.uuid5(uuid.NAMESPACE_URL, "https://example.com")
    expect(uuidV5("https://example.com")).toBe("4fd35a71-71ef-5a55-a9d9-aa75c889a6d0");
  });
  it("rejects a namespace that is not a UUID", () => {
    expect(() => uuidV5("x", "not-a-uuid")).toThrow(/not a UUID/);
  });
  it("gives role assignments one stable GUID per (scope, principal, role), case-insensitive", () => {
    const a = roleAssignmentName("/subscriptions/S/resourceGroups/rg", "P", "AcrPull");
    expect(roleAssignmentName("/subscriptions/s/resourcegroups/RG", "p", "AcrPull")).toBe(a);
    expect(roleAssignmentName("/subscriptions/S/resourceGroups/rg", "P", "Contributor")).not.toBe(a);
  });
});

describe("hashes", () => {
  it("length-prefix parts so boundaries matter", () => {
    expect(sha256("ab", "c")).not.toBe(sha256("a", "bc"));
    expect(sha256("ab", "c")).toBe(sha256("ab", "c"));
  });
  it("canonical JSON ignores key order but not array order", () => {
    expect(canonicalJson({ b: 1, a: { d: 2, c: [3, 1] } })).toBe('{"a":{"c":[3,1],"d":2},"b":1}');
    expect(canonicalJson({ a: [1, 2] })).not.toBe(canonicalJson({ a: [2, 1] }));
    expect(canonicalJson({ a: undefined, b: null })).toBe('{"b":null}');
  });
});

describe("durations", () => {
  it.each([
    [120, "PT120S"],
    [0, "PT0S"],
  ])("isoSeconds(%i) = %s", (s, iso) => expect(isoSeconds(s)).toBe(iso));
  it.each([
    [180000, "PT180S"],
    [120000, "PT120S"],
    [1500, "PT1.500S"],
  ])("isoMillis(%i) = %s", (ms, iso) => expect(isoMillis(ms)).toBe(iso));
  it("rejects fractional or negative seconds", () => {
    expect(() => isoSeconds(1.5)).toThrow(/whole number/);
    expect(() => isoSeconds(-1)).toThrow();
    expect(() => isoMillis(Number.NaN)).toThrow();
  });
});

describe("azureNames", () => {
  it("follows every Azure naming rule for many prefixes, stacks and subscriptions", () => {
    const prefixes = ["ab", "phi3ft", "z9z9z9z9"];
    const stacks = ["dev", "prod.eastus2", "feature_branch-with-a-very-long-name-2026", "X"];
    const subs = ["00000000-0000-0000-0000-000000000000", "FFFFFFFF-1111-2222-3333-444444444444"];
    for (const prefix of prefixes) for (const stack of stacks) for (const subscriptionId of subs) {
      const n = azureNames({ prefix, stack, subscriptionId });
      expect(n.storageAccount).toMatch(NAME_RULES.storageAccount.pattern);
      expect(n.keyVault).toMatch(NAME_RULES.keyVault.pattern);
      expect(n.containerRegistry).toMatch(NAME_RULES.containerRegistry.pattern);
      expect(n.endpoint).toMatch(NAME_RULES.endpoint.pattern);
      expect(n.workspace).toMatch(NAME_RULES.workspace.pattern);
    }
  });
  it("is stable, unique per stack and per subscription, case-insensitive in the subscription id", () => {
    const base = { prefix: "phi3ft", stack: "dev", subscriptionId: "abc" };
    expect(azureNames(base)).toEqual(azureNames({ ...base, subscriptionId: "ABC" }));
    expect(azureNames(base).storageAccount).not.toBe(azureNames({ ...base, stack: "prod" }).storageAccount);
    expect(azureNames(base).storageAccount).not.toBe(azureNames({ ...base, subscriptionId: "abd" }).storageAccount);
    expect(azureNames({ ...base, resourceGroupName: "existing-rg" }).resourceGroup).toBe("existing-rg");
  });
  it("assertAzureName names the kind, the name and the rule", () => {
    expect(() => assertAzureName("storageAccount", "Not-Valid")).toThrow("Azure storageAccount name 'Not-Valid' is invalid: 3-24 lowercase letters and digits");
    expect(slug("Prod.East_US-2")).toBe("prodeastus2");
  });
});

describe("nameGeneration (the way out of soft-deleted names after destroy)", () => {
  const base = { prefix: "phi3ft", stack: "dev", subscriptionId: "00000000-0000-0000-0000-00000000c0de" };
  it("generation 0 keeps the names stacks had before the setting existed", () => {
    expect(azureNames({ ...base, generation: 0 })).toEqual(azureNames(base));
  });
  it("each generation gives every soft-deletable and globally unique name a new suffix", () => {
    const g0 = azureNames(base);
    const g1 = azureNames({ ...base, generation: 1 });
    const g2 = azureNames({ ...base, generation: 2 });
    for (const key of ["storageAccount", "keyVault", "containerRegistry", "logAnalytics", "appInsights", "workspace", "endpoint", "hub", "project"] as const) {
      expect(g1[key], key).not.toBe(g0[key]);
      expect(g2[key], key).not.toBe(g1[key]);
    }
    expect(g1.resourceGroup).toBe(g0.resourceGroup);
    expect(azureNames({ ...base, generation: 1 })).toEqual(g1);
  });
});

describe("blobFileName: data file names in blob names and azureml:// URIs need no encoding", () => {
  it.each([
    ["train.jsonl", "train.jsonl"],
    ["tr#ain.jsonl", "tr_ain.jsonl"],
    ["te?st.jsonl", "te_st.jsonl"],
    ["a%2e%2e.jsonl", "a_2e_2e.jsonl"],
    ["my data.jsonl", "my_data.jsonl"],
    ["tr\nain.jsonl", "tr_ain.jsonl"],
    ["..jsonl", "_jsonl"],
    ["ünï.jsonl", "_n_.jsonl"],
  ])("%j → %j", (name, safe) => {
    expect(blobFileName(name)).toBe(safe);
    expect(encodeURIComponent(blobFileName(name))).toBe(blobFileName(name));
  });
});
