//! `accord schema`: the JSON Schema of a source's YAML documents, for
//! editors (yaml-language-server); `schema/accord.schema.json` holds it.

use crate::model::schema::file_schema_json;

pub fn schema() -> u8 {
    super::print(&file_schema_json())
}
