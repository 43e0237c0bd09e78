
/// What this plugin needs (`manifest.json`, kept in the component as the
/// custom section `openfn:microservice/manifest`): the service checks it
/// against the plugin's `[plugins.{{name}}]` table when it loads, and
/// refuses the plugin, saying what to add, when the table lacks it. Edit
/// `manifest.json` when the plugin needs other folders, hosts or config.
#[unsafe(link_section = "openfn:microservice/manifest")]
#[used]
static MANIFEST: [u8; MANIFEST_JSON.len()] =
    *MANIFEST_JSON.first_chunk::<{ MANIFEST_JSON.len() }>().unwrap();
const MANIFEST_JSON: &[u8] = include_bytes!("../manifest.json");
