// A filter of the AssemblyScript SDK: it reads (or sets) the properties
// its plugin configuration lists, by single-segment dotted names, as
// AssemblyScript filters do, and logs what it gets.
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, log, LogLevelValues } from "@solo-io/proxy-runtime";
import { get_property, set_property } from "@solo-io/proxy-runtime/runtime";

function hex(buffer: ArrayBuffer): string {
  const bytes = Uint8Array.wrap(buffer);
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    out += (b < 16 ? "0" : "") + b.toString(16);
  }
  return out;
}

class PropertiesRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new Properties(context_id, this);
  }
}

class Properties extends Context {
  constructor(context_id: u32, root_context: PropertiesRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const steps = this.root_context.getConfiguration().split(" ");
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i];
      if (step.length == 0) continue;
      const eq = step.indexOf("=");
      if (eq > 0) {
        const path = step.substring(0, eq);
        const status = set_property(path, String.UTF8.encode(step.substring(eq + 1)));
        log(LogLevelValues.info, "as set_property " + path + " returned " + status.toString());
        continue;
      }
      const value = get_property(step);
      log(LogLevelValues.info, "as property " + step + ": len=" + value.byteLength.toString() + " hex=" + hex(value));
    }
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new PropertiesRoot(context_id); }, "as_properties");
