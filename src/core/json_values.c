/* Counting JSON values (see json_values.h). */
#include "core/json_values.h"

/* Every value is the document itself or follows a comma or an opening bracket or brace (k elements: k - 1
 * commas), so one plus the count of those outside strings bounds the values from above, valid JSON or not. */
int json_check_values(const char *text, size_t n, size_t max_values, const char *source, Error *err) {
    size_t values = 1;
    for (size_t i = 0; i < n && values <= max_values; i++) {
        if (text[i] == '"') {
            for (i++; i < n && text[i] != '"'; i++)
                if (text[i] == '\\') i++;
        } else if (text[i] == ',' || text[i] == '[' || text[i] == '{') {
            values++;
        }
    }
    if (values <= max_values) return 0;
    return error_set(err, "%s: more than %zu JSON values (diffuse reads at most that many, to bound the memory "
                     "that parsing takes)", source, max_values);
}
