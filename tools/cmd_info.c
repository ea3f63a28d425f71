/* tools/cmd_info.c - placeholder, being written */
