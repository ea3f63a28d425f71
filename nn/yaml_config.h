/* yaml_config.h - placeholder */
#ifndef DD_NN_YAML_CONFIG_H
#define DD_NN_YAML_CONFIG_H
typedef struct ConfigSchema ConfigSchema;
#endif
