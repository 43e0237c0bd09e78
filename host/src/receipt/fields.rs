//! Named values gathered into a JSON object, the way forms and XML
//! elements repeat them: a name seen once holds its value, a name seen
//! again holds the array of all its values, in order.

use std::collections::HashSet;

use serde_json::{Map, Value};

#[derive(Default)]
pub struct Fields {
    object: Map<String, Value>,
    /// Names seen more than once, whose value is the array of their values.
    repeated: HashSet<String>,
}

impl Fields {
    /// Adds `value` under `name` (see the module docs); a value that is
    /// itself an array stays one element of the repeats.
    pub fn insert(&mut self, name: String, value: Value) {
        match self.object.get_mut(&name) {
            None => {
                self.object.insert(name, value);
            }
            Some(Value::Array(values)) if self.repeated.contains(&name) => values.push(value),
            Some(first) => {
                let first = first.take();
                self.object
                    .insert(name.clone(), Value::Array(vec![first, value]));
                self.repeated.insert(name);
            }
        }
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.object
    }

    pub fn is_empty(&self) -> bool {
        self.object.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn repeats_become_arrays_and_arrays_stay_values() {
        let mut f = Fields::default();
        for (k, v) in [
            ("a", json!("1")),
            ("b", json!([1])),
            ("a", json!("2")),
            ("b", json!([2])),
            ("a", json!("3")),
        ] {
            f.insert(k.into(), v);
        }
        f.insert("c".into(), json!([0]));
        assert_eq!(
            Value::Object(f.into_map()),
            json!({"a": ["1", "2", "3"], "b": [[1], [2]], "c": [0]})
        );
    }
}
