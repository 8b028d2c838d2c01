/**
 * The configuration's zod schemas and what is read from them (the settings,
 * the plain rules): a separate entry from `mod.ts`, so that a running edged,
 * which needs them only for a configuration its plain rules do not pass
 * (`config.ts`), does not load zod. The reference (`deno task config-docs`),
 * the fuzzers and the tests import them from here.
 *
 * @module
 */
export { adaptersSchema } from "./adapters_config.ts";
export { configSchema } from "./config_schema.ts";
export {
  type BlockSetting,
  blockSettings,
  configRules,
  configRulesModule,
  settings,
} from "./config_settings.ts";
export { OPCUA_SECURITY_POLICIES, opcuaAdapterSchema, opcuaPointSchema } from "./config_opcua.ts";
export { CONFIG_RULES } from "./_config_rules_table.ts";
export { type ConfigRule, parseByRules } from "./config_rules.ts";
