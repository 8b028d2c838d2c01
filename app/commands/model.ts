/**
 * `edged model`: the models modules granted `nn` may use.
 *
 *     edged model add NAME FILE.onnx [--version V] [--max-elements N]
 *     edged model list [--json]
 *     edged model remove NAME
 *
 * The commands talk to the running edged over its API (`--url`, default
 * from `listen`; the token from `api_token` or the data directory). With
 * `--offline` they work on the data directory directly while edged is
 * stopped (holding its lock; `add` validates with an engine of its own).
 * Exit 0 on success, 1 when refused or failed, 2 on usage errors.
 *
 * @module
 */

import { Command } from "commander";
import { resolve } from "node:path";
import type { Config } from "../../runtime/mod.ts";
import { EXIT } from "../../lib/mod.ts";
import {
  ModelInvalidError,
  ModelNotFoundError,
  type ModelStatus,
  type NnService,
  nnServiceClass,
} from "../../sandbox/mod.ts";
import {
  type ApiAnswer,
  callLocalApi,
  commandConfig,
  type LocalApiOptions,
  localApiOptions,
  unreachable,
  whileStopped,
} from "./_local_api.ts";

const EXIT_FAILURE = EXIT.FAILURE;
const EXIT_USAGE = EXIT.USAGE;

interface CommonOptions extends LocalApiOptions {
  offline?: boolean;
}

function common(cmd: Command): Command {
  return localApiOptions(cmd)
    .option("--offline", "edged is not running: change the data directory directly");
}

const config = (o: CommonOptions) => commandConfig("edged model", o);

/** Calls `/api/v1/models{path}`; exits 1 when edged does not answer. */
async function api(
  o: CommonOptions,
  cfg: Config,
  method: string,
  path: string,
  body?: FormData,
): Promise<ApiAnswer> {
  try {
    return await callLocalApi(o, cfg, method, `/models${path}`, body);
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    unreachable(
      "edged model",
      o,
      cfg,
      err,
      "is it running? --offline works on the data directory without it",
    );
  }
}

function print(r: ApiAnswer): never {
  if (r.body !== null) console.log(JSON.stringify(r.body, null, 2));
  Deno.exit(r.status < 300 ? 0 : EXIT_FAILURE);
}

/** Runs `fn` with an in-process NnService on the stopped edged's data directory. */
function offline<T>(cfg: Config, fn: (nn: NnService) => Promise<T>): Promise<T> {
  return whileStopped("edged model", cfg.data_dir, async () => {
    const n = cfg.nn;
    const NnService = await nnServiceClass();
    const nn = new NnService({
      dataDir: resolve(cfg.data_dir),
      memoryBytes: n.memory_bytes,
      maxElements: n.max_elements,
      maxModelBytes: n.max_model_bytes,
    });
    try {
      return await fn(nn);
    } catch (err) {
      if (err instanceof ModelInvalidError || err instanceof ModelNotFoundError) {
        console.error(`edged model: ${err.message}`);
        Deno.exit(EXIT_FAILURE);
      }
      throw err;
    } finally {
      nn.stop();
    }
  }, "without --offline the running edged does it");
}

/** One line per model for `list`. */
export function renderModels(models: ModelStatus[]): string {
  if (models.length === 0) return "no models installed";
  const shape = (t: { name: string; type: string; dims: number[] }) =>
    `${t.name}: ${t.type}[${t.dims.map((d) => (d < 0 ? "?" : d)).join(",")}]`;
  return models.map((m) =>
    `${m.name} ${m.version ?? "-"} ${m.sha256.slice(0, 12)} ${m.size} B  in ${
      m.inputs.map(shape).join(" ")
    }  out ${m.outputs.map(shape).join(" ")}${
      m.used_by.length ? `  used by ${m.used_by.join(",")}` : ""
    }`
  ).join("\n");
}

/** Builds the `model` command and its sub-commands. */
export function modelCommand(): Command {
  const model = new Command("model").description(
    "ONNX models for modules granted nn (WASI-NN): add, list, remove",
  );

  common(model.command("add"))
    .description(
      "install (or replace) a model; refused with the reason when the engine cannot load it",
    )
    .argument("<name>", "the model's name (what grants.nn and load_by_name use)")
    .argument("<file>", "the .onnx file")
    .option("--version <v>", "a version label")
    .option("--max-elements <n>", "element limit of its tensors (default nn.max_elements)")
    .action(
      async (
        name: string,
        file: string,
        o: CommonOptions & { version?: string; maxElements?: string },
      ) => {
        const cfg = await config(o);
        let bytes: Uint8Array;
        try {
          bytes = await Deno.readFile(file);
        } catch (err) {
          console.error(`edged model add: ${(err as Error).message}`);
          Deno.exit(EXIT_USAGE);
        }
        const maxElements = o.maxElements === undefined ? undefined : Number(o.maxElements);
        if (maxElements !== undefined && !Number.isInteger(maxElements)) {
          console.error(`edged model add: --max-elements must be an integer, got ${o.maxElements}`);
          Deno.exit(EXIT_USAGE);
        }
        if (o.offline) {
          const s = await offline(
            cfg,
            (nn) => nn.install(name, bytes, { version: o.version, maxElements }),
          );
          console.log(JSON.stringify(s, null, 2));
          return;
        }
        const form = new FormData();
        form.set("model", new File([bytes as Uint8Array<ArrayBuffer>], `${name}.onnx`));
        if (o.version) {
          form.set("version", o.version);
        }
        if (maxElements !== undefined) form.set("max_elements", String(maxElements));
        print(await api(o, cfg, "PUT", `/${encodeURIComponent(name)}`, form));
      },
    );

  common(model.command("list"))
    .description("installed models with their inputs, outputs and users")
    .option("--json", "print the JSON answer of GET /api/v1/models")
    .action(async (o: CommonOptions & { json?: boolean }) => {
      const cfg = await config(o);
      const r = o.offline
        ? { status: 200, body: { models: await offline(cfg, (nn) => nn.list()) } }
        : await api(o, cfg, "GET", "");
      if (o.json || r.status >= 300) print(r);
      console.log(renderModels((r.body as { models: ModelStatus[] }).models));
    });

  common(model.command("remove"))
    .description("uninstall a model (modules granted it get not_found)")
    .argument("<name>", "the model's name")
    .action(async (name: string, o: CommonOptions) => {
      const cfg = await config(o);
      if (o.offline) {
        await offline(cfg, (nn) => nn.remove(name));
        console.log(`removed ${name}`);
        return;
      }
      const r = await api(o, cfg, "DELETE", `/${encodeURIComponent(name)}`);
      if (r.status === 204) {
        console.log(`removed ${name}`);
        Deno.exit(0);
      }
      print(r);
    });

  return model;
}
