/**
 * Azure public-cloud regions (the `name` of `GET /subscriptions/{id}/locations?api-version=2022-12-01`,
 * as `az account list-locations --query "[].name"` prints them), recorded by this project on
 * {@link REGIONS_RECORDED} from learn.microsoft.com/azure/reliability/regions-list (not fetched
 * from the API). A region Azure opened after that date must be added here.
 */
import { classifyName, type NameVerdict } from "./vm-sizes";

/** Date the list below was recorded (YYYY-MM-DD). */
export const REGIONS_RECORDED = "2026-11-23";

/** Public Azure regions, physical ones only (no `*euap` canaries, no geographies like `europe`). */
export const AZURE_REGIONS: readonly string[] = [
  "australiacentral", "australiacentral2", "australiaeast", "australiasoutheast",
  "brazilsouth", "brazilsoutheast", "canadacentral", "canadaeast", "centralindia", "centralus",
  "chilecentral", "eastasia", "eastus", "eastus2", "francecentral", "francesouth", "germanynorth",
  "germanywestcentral", "indonesiacentral", "israelcentral", "italynorth", "japaneast", "japanwest",
  "jioindiacentral", "jioindiawest", "koreacentral", "koreasouth", "malaysiawest", "mexicocentral",
  "newzealandnorth", "northcentralus", "northeurope", "norwayeast", "norwaywest", "polandcentral",
  "qatarcentral", "southafricanorth", "southafricawest", "southcentralus", "southeastasia",
  "southindia", "spaincentral", "swedencentral", "switzerlandnorth", "switzerlandwest",
  "uaecentral", "uaenorth", "uksouth", "ukwest", "westcentralus", "westeurope", "westindia",
  "westus", "westus2", "westus3",
];

/**
 * Check a region name against {@link AZURE_REGIONS}: `known`, a `typo` (display names such as
 * `East US 2`, or at most two letters off: `eastus3` → eastus2, eastus) or `unknown`.
 */
export function classifyRegion(name: string): NameVerdict {
  return classifyName(name, AZURE_REGIONS, 2);
}

/** Plan-time check of `azure-native:location`: an error message naming the list's date, else undefined. */
export function regionProblem(name: string): string | undefined {
  const v = classifyRegion(name);
  if (v.kind === "known") return v.canonical === name ? undefined : `must be written ${v.canonical} (lowercase, as Azure names regions)`;
  if (v.kind === "typo") return `is not an Azure region; did you mean ${v.suggestions.join(" or ")}?`;
  return (
    `is not an Azure region in the list recorded on ${REGIONS_RECORDED} (infra/regions.ts)` +
    `${v.similar.length ? `; did you mean ${v.similar.join(" or ")}?` : ""}; \`az account list-locations -o table\` lists them`
  );
}
