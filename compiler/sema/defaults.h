// Default values from the schema table: of an operator parameter, of an
// operator called with no arguments, of a settings block, of a stage field.
// `mlpc check` never needs them all; the plan lists every field, defaults
// filled in.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "compiler/sema/program.h"
#include "compiler/sema/value.h"
#include "stdlib/schema/schema.h"

namespace mlp {

Value DefaultValue(const schema::Param& p);  // Value::Error() when it has none
Value CallWithDefaults(const schema::Op& op);
// The default of a whole field: a block's default is the map of its settings' defaults.
Value FieldDefault(const schema::Field& f);

// The stage's fields in schema order, each unset field with a default filled
// in (an unset `seed` takes the pipeline's seed).
std::vector<std::pair<std::string, Value>> FieldsWithDefaults(const CheckedStage& stage,
                                                              const CheckedPipeline& pipeline);

}  // namespace mlp
