package ProxyWasmTest;

# Helpers for this project's .t files, on Test::Nginx's public API only (so
# the files still run under upstream Test::Nginx).

use strict;
use warnings;

use Exporter 'import';
our @EXPORT = qw(default_modules);

# default_modules(name => path, ...): the wasm{} block of every block that
# has no main_config of its own.
sub default_modules {
    my @modules = @_;
    my $wasm = "    wasm {\n";
    while (my ($name, $path) = splice @modules, 0, 2) {
        $wasm .= "        module $name $path;\n";
    }
    $wasm .= "    }\n";

    main::add_block_preprocessor(sub {
        my $block = shift;
        $block->set_value('main_config', $wasm) unless defined $block->main_config;
    });
}

1;
