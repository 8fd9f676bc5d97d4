// sluice completion bash|zsh|fish: a completion script generated from the command tree, so it
// knows every subcommand and option (including those other files register). zsh runs the bash
// script through bashcompinit; fish gets its own `complete` lines.
#include <iostream>
#include <string>

#include "cli/cli.h"

namespace sluice::cli {

namespace {

// Calls fn(path, app) for `app` ("sluice") and every command below it, depth first.
template <class Fn>
void for_each_command(const CLI::App& app, const std::string& path, const Fn& fn) {
  fn(path, app);
  for (const CLI::App* sub : app.get_subcommands({})) {
    for_each_command(*sub, path + " " + sub->get_name(), fn);
  }
}

std::string bash_script(const CLI::App& root) {
  std::string out =
      "# bash completion for sluice: eval \"$(sluice completion bash)\", or save it as\n"
      "# /etc/bash_completion.d/sluice\n"
      "_sluice() {\n"
      "  [ -n \"${ZSH_VERSION:-}\" ] && setopt localoptions ksharrays  # zsh: arrays from 0\n"
      "  local cur=${COMP_WORDS[COMP_CWORD]} path=sluice words i w\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    w=${COMP_WORDS[i]}\n"
      "    case \"$path $w\" in\n";
  // Known paths, so only subcommand words extend the path; then one `case` arm per command
  // path listing its words.
  std::string arms;
  for_each_command(root, "sluice", [&](const std::string& path, const CLI::App& app) {
    if (&app != &root) out += "      \"" + path + "\") path=\"$path $w\" ;;\n";
    std::string words;
    for (const CLI::App* sub : app.get_subcommands({})) words += sub->get_name() + " ";
    for (const CLI::Option* opt : app.get_options()) {
      for (const auto& l : opt->get_lnames()) words += "--" + l + " ";
      for (const auto& sn : opt->get_snames()) words += "-" + sn + " ";
    }
    arms += "    \"" + path + "\") words=\"" + words + "\" ;;\n";
  });
  out +=
      "    esac\n"
      "  done\n"
      "  case \"$path\" in\n" +
      arms +
      "  esac\n"
      "  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
      "}\n"
      "complete -o default -F _sluice sluice\n";
  return out;
}

std::string zsh_script(const CLI::App& root) {
  return "#compdef sluice\n"
         "# zsh completion for sluice: eval \"$(sluice completion zsh)\" in ~/.zshrc (after\n"
         "# compinit), or save it as _sluice in a directory of $fpath.\n"
         "(( $+functions[compdef] )) || { autoload -U +X compinit && compinit -u; }\n"
         "autoload -U +X bashcompinit && bashcompinit\n" +
         bash_script(root);
}

// fish: __sluice_path names the command path typed so far; each path offers its subcommands
// and its options (-l long, -s short).
std::string fish_script(const CLI::App& root) {
  std::string out =
      "# fish completion for sluice: sluice completion fish > "
      "~/.config/fish/completions/sluice.fish\n"
      "function __sluice_path\n"
      "    set -l path sluice\n"
      "    for w in (commandline -opc)[2..-1]\n"
      "        switch \"$path $w\"\n";
  std::string lines = "complete -c sluice -f\n";
  for_each_command(root, "sluice", [&](const std::string& path, const CLI::App& app) {
    if (&app != &root) {
      out += "            case '" + path + "'\n                set path \"$path $w\"\n";
    }
    const std::string cond = "-n 'test (__sluice_path) = \"" + path + "\"'";
    std::string subs;
    for (const CLI::App* sub : app.get_subcommands({})) {
      subs += (subs.empty() ? "" : " ") + sub->get_name();
    }
    if (!subs.empty()) lines += "complete -c sluice " + cond + " -a '" + subs + "'\n";
    for (const CLI::Option* opt : app.get_options()) {
      std::string flags;
      for (const auto& l : opt->get_lnames()) flags += " -l " + l;
      for (const auto& sn : opt->get_snames()) flags += " -s " + sn;
      if (!flags.empty()) lines += "complete -c sluice " + cond + flags + "\n";
    }
  });
  out +=
      "        end\n"
      "    end\n"
      "    echo $path\n"
      "end\n";
  return out + lines;
}

}  // namespace

void register_completion(CLI::App& app, Context& ctx) {
  auto shell = std::make_shared<std::string>();
  auto* cmd =
      app.add_subcommand("completion", "Print a shell completion script (bash, zsh or fish)");
  cmd->add_option("shell", *shell, "bash, zsh or fish")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh", "fish"}));
  cmd->callback([&app, &ctx, shell] {
    (void)ctx;
    if (*shell == "zsh") {
      std::cout << zsh_script(app);
    } else if (*shell == "fish") {
      std::cout << fish_script(app);
    } else {
      std::cout << bash_script(app);
    }
  });
}

}  // namespace sluice::cli
